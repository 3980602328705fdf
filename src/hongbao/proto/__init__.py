"""The ``hongbao.v1`` protobuf contracts (``hongbao/v1/*.proto``) and their generated code."""
