"""The ``hongbao`` command line: a thin shell that parses, calls a client object and renders."""
