"""Certificates, mutual TLS and the identities they carry (issue 12, part B).

``certs``: the cluster CA and the certificates it issues (``hongbao certs init/list``).
``identity``: who a certificate names (a role and a name) and how a servicer reads it.
``tls``: gRPC server and channel credentials from a certificates directory, and the
rule that running without TLS is a visible choice (``tls = false``, ``--insecure``).
``interceptor``: which roles may call which services.
"""
