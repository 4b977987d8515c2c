"""Stores on real LevelDB databases in temporary node homes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.store import BlockStore, ChainDatabase
from tests.state.chain import CHAIN_ID, ChainBuilder


def open_store(home: Path) -> BlockStore:
    return BlockStore(ChainDatabase.open(home))


def initialized_store(home: Path, chain: ChainBuilder) -> BlockStore:
    store = open_store(home)
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    return store


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture
def chain() -> ChainBuilder:
    return ChainBuilder()


@pytest.fixture
def store(home: Path, chain: ChainBuilder) -> Iterator[BlockStore]:
    opened = initialized_store(home, chain)
    yield opened
    opened.database.close()
