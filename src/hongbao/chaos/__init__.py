"""Chaos engineering for real multi-process clusters (DESIGN.md section 6).

Layering: ``toxiproxy`` (a Toxiproxy-compatible fault-injecting TCP proxy and its HTTP
API) knows nothing about hongbao; the chaos runner, its faults and checks build on it.
"""
