"""Tests of the node runtime: storage first."""
