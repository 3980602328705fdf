"""The simulator's tiny deterministic state machine: a hash chain over applied entries.

Why a hash chain: two replicas are in the same state exactly when they applied the same
entries in the same order, and a 16-byte digest says that without keeping the entries. A
snapshot carries the digest, so a snapshot that does not match the global applied
sequence is caught the moment it is installed. A read returns (applied index, digest).

The machine also tracks the membership as of its applied index, which is what a runtime
must store with a snapshot (``create_snapshot(conf_state=...)``); configuration entries
are otherwise applied by the core itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import dataclass

from hongbao._invariant import invariant
from hongbao.raft.confchange import ConfChange, ConfChangeError, apply_change
from hongbao.raft.types import ConfState, Entry, EntryType, LogIndex, Snapshot

DIGEST_BYTES = 16
_SNAPSHOT = struct.Struct(f">QQ{DIGEST_BYTES}s")
GENESIS_DIGEST = bytes(DIGEST_BYTES)


def chain_digest(previous: bytes, entry: Entry) -> bytes:
    """The digest after applying ``entry`` on top of the state whose digest is ``previous``."""
    header = struct.pack(">QQB", entry.index, entry.term, int(entry.type))
    return hashlib.blake2b(previous + header + entry.data, digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class MachineImage:
    """The whole state: small enough to copy on every write."""

    applied_index: LogIndex
    digest: bytes
    conf_state: ConfState
    writes_applied: int  # non-empty NORMAL entries applied

    @staticmethod
    def initial(conf_state: ConfState) -> MachineImage:
        return MachineImage(0, GENESIS_DIGEST, conf_state, 0)

    def encode(self) -> bytes:
        """Snapshot data; the membership travels in the snapshot's metadata instead."""
        return _SNAPSHOT.pack(self.applied_index, self.writes_applied, self.digest)

    @staticmethod
    def from_snapshot(snapshot: Snapshot) -> MachineImage:
        applied_index, writes_applied, digest = _SNAPSHOT.unpack(snapshot.data)
        invariant(applied_index == snapshot.meta.index, "snapshot data and metadata disagree")
        return MachineImage(applied_index, digest, snapshot.meta.conf_state, writes_applied)


class StateMachine:
    def __init__(self, image: MachineImage) -> None:
        self.image = image

    @property
    def applied_index(self) -> LogIndex:
        return self.image.applied_index

    def apply(self, entry: Entry) -> MachineImage:
        """Apply the next entry (strictly the next index: raft-pitfalls 15)."""
        invariant(
            entry.index == self.image.applied_index + 1,
            f"apply out of order: entry {entry.index} after {self.image.applied_index}",
        )
        conf_state = self.image.conf_state
        if entry.type is EntryType.CONF_CHANGE:
            # The core refuses invalid changes; if one slipped in, it would change nothing.
            with contextlib.suppress(ConfChangeError):
                conf_state = apply_change(conf_state, ConfChange.decode(entry.data))
        is_write = entry.type is EntryType.NORMAL and bool(entry.data)
        writes = self.image.writes_applied + int(is_write)
        self.image = MachineImage(
            entry.index, chain_digest(self.image.digest, entry), conf_state, writes
        )
        return self.image

    def restore(self, snapshot: Snapshot) -> MachineImage:
        self.image = MachineImage.from_snapshot(snapshot)
        return self.image
