"""The leader's speculative view reads exactly what the store will hold once it applies.

A model store gets every write in log order (base, then each proposed layer, then the
evaluation's own); the overlay gets the same writes split between a base store, a
speculation of pending layers and its own. Every get and every bounded scan (prefixes,
start keys, limits) must answer alike, pending deletes hiding base rows included; and
layers leave the speculation as their entries apply, with the answers unchanged.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.ledger import MemoryStore, Table
from hongbao.ledger.overlay import OverlayStore, Speculation

TABLES = (Table.OUTBOX, Table.EXPIRY)
KEYS = [bytes([a]) + bytes([b]) for a in b"abc" for b in b"xyz"] + [b"a", b"b", b"c"]

write = st.tuples(
    st.sampled_from(TABLES),
    st.sampled_from(KEYS),
    st.one_of(st.none(), st.binary(min_size=1, max_size=3)),
)
writes = st.lists(write, max_size=12)


def apply_writes(store: MemoryStore | OverlayStore, batch: list) -> None:
    for table, key, value in batch:
        if value is None:
            store.delete(table, key)
        else:
            store.put(table, key, value)


def same_answers(view: OverlayStore, model: MemoryStore) -> None:
    for table in TABLES:
        for key in KEYS:
            assert view.get(table, key) == model.get(table, key), (table, key)
        for prefix in (b"", b"a", b"b", b"bx"):
            for start in (b"", b"b", b"by", b"c"):
                for limit in (1, 2, 3, 5, 40):
                    expected = model.scan(table, prefix=prefix, start=start, limit=limit)
                    got = view.scan(table, prefix=prefix, start=start, limit=limit)
                    assert got == expected, (table, prefix, start, limit)


def last_write_per_key(batch: list) -> list:
    final = {(table, key): value for table, key, value in batch}
    return [(table, key, value) for (table, key), value in final.items()]


@settings(max_examples=300, deadline=None)
@given(base=writes, layers=st.lists(writes, max_size=5), mine=writes)
def test_the_overlay_reads_what_the_log_will_hold(base: list, layers: list, mine: list) -> None:
    model, store = MemoryStore(), MemoryStore()
    apply_writes(model, base)
    apply_writes(store, base)
    speculation = Speculation()
    speculation.reset(term=3, start_index=10)
    for index, layer in enumerate(layers, start=11):
        apply_writes(model, layer)
        speculation.add(index, last_write_per_key(layer))
    view = OverlayStore(store, speculation)
    apply_writes(view, mine)
    model_with_mine = model.copy()
    apply_writes(model_with_mine, mine)
    same_answers(view, model_with_mine)
    assert view.writes() == last_write_per_key(mine)
    # The layers apply one by one: the base takes their rows, the speculation drops them.
    for index, layer in enumerate(layers, start=11):
        apply_writes(store, layer)
        speculation.applied(index)
        same_answers(OverlayStore(store, speculation), model)
    assert speculation.layer_count == 0


def test_a_pending_delete_hides_the_base_row_it_shadows() -> None:
    store = MemoryStore()
    for key in (b"a", b"b", b"c", b"d"):
        store.put(Table.OUTBOX, key, b"v")
    speculation = Speculation()
    speculation.reset(term=1, start_index=0)
    speculation.add(1, [(Table.OUTBOX, b"a", None), (Table.OUTBOX, b"b", None)])
    view = OverlayStore(store, speculation)
    assert view.scan(Table.OUTBOX, limit=1) == [(b"c", b"v")]
    view.delete(Table.OUTBOX, b"c")
    view.put(Table.OUTBOX, b"bb", b"new")
    assert view.scan(Table.OUTBOX, limit=2) == [(b"bb", b"new"), (b"d", b"v")]
    assert store.get(Table.OUTBOX, b"c") == b"v"  # the base store is never written


def test_a_newer_layer_keeps_its_write_when_an_older_one_applies() -> None:
    store = MemoryStore()
    speculation = Speculation()
    speculation.reset(term=1, start_index=0)
    speculation.add(1, [(Table.OUTBOX, b"k", b"one")])
    speculation.add(2, [(Table.OUTBOX, b"k", b"two")])
    store.put(Table.OUTBOX, b"k", b"one")
    speculation.applied(1)
    assert OverlayStore(store, speculation).get(Table.OUTBOX, b"k") == b"two"
    speculation.reset(term=2, start_index=5)  # a new term forgets every layer
    assert OverlayStore(store, speculation).get(Table.OUTBOX, b"k") == b"one"
