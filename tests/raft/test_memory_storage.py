"""The storage contract run against the in-memory reference, ``MemoryStorage``."""

from __future__ import annotations

import pytest

from hongbao.raft.storage import MemoryStorage

from .storage_contract import Factory, StorageContract


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def make_storage(self) -> Factory:
        return MemoryStorage
