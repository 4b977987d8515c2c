"""Startup check: is the store consistent, and what must the node do next?

Because a block and its state writes are one atomic batch, a consistent store is always at a
block boundary: the node never replays anything locally, it fetches (block sync) or waits for
consensus from `next_height` on. Anything else found here is damage the node must not paper
over, so it is reported as a problem and the node refuses to start.

The store does not know the application's state layout: the caller hands `reconcile` the
function that reads, from committed state, the height the application last executed
(`state.progress.executed_height`); it raises StateCorruptionError when it cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from emrchain.store import layout
from emrchain.store.block_store import ZERO_ID, BlockStore
from emrchain.store.committed_view import CommittedStateView
from emrchain.store.errors import StoreCorruptionError
from emrchain.types.execution import StateCorruptionError

ApplicationHeight = Callable[[CommittedStateView], int]
"""Reads the height the application last executed from committed state; StateCorruptionError
when the state does not say."""


class StartupAction(Enum):
    INITIALIZE_FROM_GENESIS = "initialize the store from genesis"
    SYNC_FROM_NEXT_HEIGHT = "fetch or decide blocks from next_height on"
    REFUSE_TO_START = "refuse to start: the store is inconsistent (see problems)"


@dataclass(frozen=True, slots=True)
class StoreStatus:
    chain_id: bytes | None
    last_height: int
    last_block_id: bytes
    last_app_hash: bytes
    application_height: int | None
    """The height the application state says it executed (must equal last_height)."""
    problems: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.problems

    @property
    def next_height(self) -> int:
        return self.last_height + 1

    @property
    def action(self) -> StartupAction:
        if self.problems:
            return StartupAction.REFUSE_TO_START
        if self.chain_id is None:
            return StartupAction.INITIALIZE_FROM_GENESIS
        return StartupAction.SYNC_FROM_NEXT_HEIGHT

    def describe(self) -> str:
        if self.chain_id is None and not self.problems:
            return "empty store: initialize from genesis"
        lines = [
            f"chain {(self.chain_id or b'').decode(errors='replace')!r} at height "
            f"{self.last_height}, "
            f"app hash {self.last_app_hash.hex()}: {self.action.value}"
        ]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def reconcile(
    store: BlockStore, *, application_height: ApplicationHeight, full: bool = False
) -> StoreStatus:
    """Check the store's invariants at its head (every height too when `full`), and that the
    application state is at the head's height (`application_height` reads it)."""
    problems: list[str] = []
    if not store.is_initialized():
        if store.database.get(layout.META_HEAD) is not None:
            problems.append("a head record exists without chain metadata")
        return StoreStatus(None, 0, ZERO_ID, ZERO_ID, None, tuple(problems))
    height = store.last_height()
    executed = _check_application(store, application_height, height, problems)
    if store.app_hash(height) != store.last_app_hash():
        problems.append(f"the app hash recorded for height {height} differs from the head's")
    for missing in range(height + 1, height + 3):
        if store.validator_set(missing) is None:
            problems.append(f"no validator set for height {missing}")
    base = store.base_height()
    if base > height + 1:
        problems.append(f"the base height {base} is above the head {height} + 1")
    heights = range(base, height + 1) if full else (height,) if height >= base else ()
    for checked in heights:
        _check_height(store, checked, problems, base)
    if full:
        _check_pruned_below(store, base, problems)
    beyond_head = (
        layout.block_key(height + 1),
        layout.commit_key(height + 1),
        layout.app_hash_key(height + 1),
        layout.tx_results_key(height + 1),
    )
    for stray in beyond_head:
        if store.database.get(stray) is not None:
            problems.append(f"data for height {height + 1} exists beyond the head")
            break
    return StoreStatus(
        store.chain_id,
        height,
        store.last_block_id(),
        store.last_app_hash(),
        executed,
        tuple(problems),
    )


def _check_application(
    store: BlockStore, application_height: ApplicationHeight, height: int, problems: list[str]
) -> int | None:
    try:
        executed = application_height(store.state_view())
    except StateCorruptionError as error:
        problems.append(f"application state: {error}")
        return None
    if executed != height:
        problems.append(f"application state is at height {executed} but blocks are at {height}")
    return executed


def _check_pruned_below(store: BlockStore, base: int, problems: list[str]) -> None:
    """Pruning deletes a height's block, commit and results in one batch with the base: none
    may remain below the base. One commit may: a state-synced store keeps the certificate of
    its snapshot's block, base − 1, as the last commit of the block it proposes next
    (`docs/spec/statesync.md` §3)."""
    for prefix, name, first_kept in (
        (layout.BLOCK, "block", base),
        (layout.COMMIT, "commit", base - 1),
    ):
        keys = store.database.db.iterator(
            start=prefix, stop=prefix + layout.u64(first_kept), include_value=False
        )
        with keys:
            stray = next(keys, None)
        if stray is not None:
            problems.append(
                f"a {name} below the base {base} is stored (height {layout.read_u64(stray[1:])})"
            )


def _check_height(store: BlockStore, height: int, problems: list[str], base: int = 1) -> None:
    """Block, certificate, results and app hash of `height` are present and agree (the block
    before the base is pruned: the base block's link to it is not checked)."""
    if height == 0:
        if store.last_block_id() != ZERO_ID:
            problems.append("at genesis the last block id must be all zeros")
        return
    try:
        block = store.block(height)
        commit = store.commit(height)
        results = store.tx_results(height)
    except StoreCorruptionError as error:
        problems.append(str(error))
        return
    if block is None or commit is None or results is None:
        problems.append(f"block, commit or results of height {height} missing")
        return
    block_id = block.block_id
    if block.height != height:
        problems.append(f"the block stored at {height} has height {block.height}")
    if commit.block_id != block_id or commit.height != height:
        problems.append(f"the commit stored at {height} is for another block")
    if len(results) != len(block.txs):
        problems.append(f"height {height} has {len(results)} results for {len(block.txs)} txs")
    if store.height_of(block_id) != height:
        problems.append(f"the block id index does not point at height {height}")
    if store.app_hash(height) is None:
        problems.append(f"no app hash recorded for height {height}")
    if block.header.app_hash != store.app_hash(height - 1):
        problems.append(f"block {height} does not carry the app hash after height {height - 1}")
    if height == base and height > 1:
        return
    previous = store.block(height - 1) if height > 1 else None
    previous_id = previous.block_id if previous is not None else ZERO_ID
    if block.header.previous_block_id != previous_id:
        problems.append(f"block {height} does not link to block {height - 1}")
    if height == store.last_height() and block_id != store.last_block_id():
        problems.append("the head's block id is not the id of the last block")
