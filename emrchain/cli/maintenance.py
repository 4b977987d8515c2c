"""`emrchain rollback` and `emrchain reindex`: repairs of a stopped node's store
(`docs/operations.md`, Pruning, rollback and reindex)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from emrchain.cli.arguments import add_home_argument
from emrchain.cli.registry import CommandError, command

if TYPE_CHECKING:
    from emrchain.store import BlockStore


@contextmanager
def _stopped_node_store(home: object) -> Iterator[BlockStore]:
    """The home's block store, opened exclusively: refused while its node runs."""
    from emrchain.config.node import load_node_config
    from emrchain.store import BlockStore, ChainDatabase, StoreError, StoreLockedError

    config = load_node_config(home)  # type: ignore[arg-type]
    try:
        database = ChainDatabase.open(config.home)
    except StoreLockedError:
        raise CommandError(
            f"{config.home}: the node is running (its database is locked); stop it first"
        ) from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    try:
        store = BlockStore(database, config.limits)
        if not store.is_initialized():
            raise CommandError(f"{config.home}: the store holds no chain")
        yield store
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        database.close()


@command(
    "rollback",
    "take a stopped node's state and head back one height (the block is removed and fetched "
    "again from peers at the next start; the signing state is kept)",
    arguments=add_home_argument,
)
def rollback(args: argparse.Namespace) -> int:
    from emrchain.state.progress import executed_height
    from emrchain.store import reconcile
    from emrchain.store.rollback import rollback as roll_back

    with _stopped_node_store(args.home) as store:
        result = roll_back(store)
        status = reconcile(store, application_height=executed_height)
        if not status.consistent:
            raise CommandError(f"the store is inconsistent after the rollback: {status.describe()}")
    print(
        f"rolled back height {result.removed_height}: head at {result.head_height}, app hash "
        f"{result.head_app_hash.hex()}"
    )
    return 0


@command(
    "reindex",
    "rebuild a stopped node's node-local indexes (the tx index) from its stored blocks",
    arguments=add_home_argument,
)
def reindex(args: argparse.Namespace) -> int:
    from emrchain.store.reindex import reindex as rebuild

    with _stopped_node_store(args.home) as store:
        report = rebuild(store)
    print(
        f"reindexed {', '.join(report.indexes)} from heights {report.from_height}.."
        f"{report.to_height}: {report.entries_deleted} entries deleted, "
        f"{report.entries_written} written"
    )
    return 0
