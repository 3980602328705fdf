"""Security tests: hostile peers and clients, certificates and mutual TLS (issue 12)."""
