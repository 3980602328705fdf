"""The bounds on client work admitted before any of it runs (``node/admission.py``)."""

from __future__ import annotations

import pytest

from hongbao.node.admission import InflightBound
from hongbao.node.errors import ErrorReason, HongbaoError


def _refused(bound: InflightBound, peer: str, count: int) -> str:
    with pytest.raises(HongbaoError) as caught:
        bound.acquire(peer, count)
    assert caught.value.reason is ErrorReason.OVERLOADED
    return str(caught.value)


def test_one_connection_holds_at_most_its_share() -> None:
    bound = InflightBound(per_peer_max=10, node_max=100)
    bound.acquire("a", 10)
    assert "this connection has 10" in _refused(bound, "a", 1)
    bound.acquire("b", 10)  # another connection is not held back by the first
    bound.release("a", 10)
    bound.acquire("a", 4)
    assert (bound.held("a"), bound.held("b")) == (4, 10)


def test_many_connections_together_hold_at_most_the_node_bound() -> None:
    bound = InflightBound(per_peer_max=10, node_max=25)
    for peer in ("a", "b"):
        bound.acquire(peer, 10)
    assert "this node has 20" in _refused(bound, "c", 6)
    bound.acquire("c", 5)  # exactly up to the bound
    assert "this node has 25" in _refused(bound, "d", 1)
    bound.release("b", 10)
    bound.acquire("d", 10)  # released work frees the node-wide budget
    assert bound.refused == 2
    assert bound.held("c") == 5


def test_a_refused_acquire_holds_nothing() -> None:
    bound = InflightBound(per_peer_max=10, node_max=10)
    bound.acquire("a", 8)
    _refused(bound, "b", 3)
    assert bound.held("b") == 0
    bound.release("a", 8)
    bound.acquire("b", 10)
