"""Hypothesis state machine: random interleavings of admit, reap, gossip, commit and bans keep
the mempool's invariants and match a sequential model of the admission rules."""

from __future__ import annotations

import struct
from dataclasses import replace

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from emrchain.mempool import AdmissionCode, MempoolConfig
from tests.mempool.txs import (
    Chain,
    CountingVerifier,
    ScriptedCheck,
    anchor,
    bad_signature,
    make_pool,
    sender_key,
    tx_id,
)

SENDERS = 4
NONCES = 8
PEERS = ("peer-a", "peer-b")
SIZES = {0: len(anchor(0, 1, 0, cid_bytes=36)), 1: len(anchor(0, 1, 1, cid_bytes=64))}
CONFIG = replace(
    MempoolConfig(),
    max_txs=8,
    max_bytes=7 * SIZES[0] + 20,  # binds before max_txs when large variants pile up
    max_tx_bytes=SIZES[1],
    max_batch_txs=10,
    max_txs_per_sender=3,
    recheck_batch_txs=3,
    seen_cache_entries=10_000,  # larger than the universe: every signature verified once
)
JUNK = b"\x01junk"
KNOWN_CODES = {*AdmissionCode, ScriptedCheck.CODE}

# A batch item: a fresh transaction (sender, nonce offset from the next expected one, payload
# variant, bad signature), a resubmission of an earlier transaction (index into the history),
# or junk bytes. Offsets cluster around 0 so that most fresh transactions are admissible.
Fresh = tuple[int, int, int, bool]
fresh_items = st.tuples(
    st.integers(0, SENDERS - 1),
    st.sampled_from([0, 0, 0, 0, -1, 1, 2, -3]),
    st.integers(0, 1),
    st.sampled_from([False, False, False, True]),  # bad signature
)
batch_items = st.one_of(
    *[fresh_items.map(lambda fresh: ("fresh", fresh))] * 4,
    st.integers(0, 10**6).map(lambda index: ("again", index)),
    st.just(("junk", None)),
)


def build(sender: int, nonce: int, variant: int, bad: bool) -> bytes:
    raw = anchor(sender, nonce, variant, cid_bytes=36 if variant == 0 else 64)
    return bad_signature(raw) if bad else raw


def sender_and_nonce(raw: bytes) -> tuple[bytes, int]:
    start = 3 + raw[1]
    return raw[start : start + 32], struct.unpack_from(">Q", raw, start + 32)[0]


class MempoolMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.chain = Chain()
        self.check = ScriptedCheck()
        self.verifier = CountingVerifier()
        self.pool = make_pool(CONFIG, chain=self.chain, check=self.check, verifier=self.verifier)
        self.model: dict[bytes, list[bytes]] = {}  # sender -> pending raw txs in nonce order
        self.order: list[bytes] = []  # pending raw txs in admission order
        self.origin: dict[bytes, str | None] = {}
        self.cursors = dict.fromkeys(PEERS, 0)
        self.committed_ids: set[bytes] = set()
        self.submitted = 0
        self.history: list[bytes] = []  # recent submissions, for resubmission
        self.bad_raws: set[bytes] = set()

    def committed(self, sender: bytes) -> int:
        return self.chain(sender)

    def pending_bytes(self) -> int:
        return sum(map(len, self.order))

    def materialise(self, batch: list[tuple[str, object]]) -> list[bytes]:
        """Raw transactions for the drawn batch items, nonces relative to the model's state."""
        raws: list[bytes] = []
        offsets: dict[int, int] = {}
        for kind, value in batch:
            if kind == "junk":
                raws.append(JUNK)
            elif kind == "again" and self.history:
                raws.append(self.history[value % len(self.history)])  # type: ignore[operator]
            elif kind == "fresh":
                sender, delta, variant, bad = value  # type: ignore[misc]
                key = sender_key(sender)
                offset = offsets.get(sender, 0)
                offsets[sender] = offset + 1
                expected = self.committed(key) + len(self.model.get(key, ())) + 1 + offset
                raw = build(sender, max(0, expected + delta), variant, bad)
                if bad:
                    self.bad_raws.add(raw)
                raws.append(raw)
        return raws

    @rule(
        batch=st.lists(batch_items, max_size=CONFIG.max_batch_txs + 1),
        origin=st.sampled_from([None, *PEERS]),
    )
    def admit(self, batch: list[tuple[str, object]], origin: str | None) -> None:
        raws = self.materialise(batch)
        results = self.pool.admit_batch(raws, origin=origin)
        self.submitted += len(raws)
        self.history.extend(raw for raw in raws if raw != JUNK)
        del self.history[: -CONFIG.max_txs * 4]
        assert len(results) == len(raws)
        if len(raws) > CONFIG.max_batch_txs:
            event("code batch_too_large")
            assert {result.code for result in results} == {AdmissionCode.BATCH_TOO_LARGE}
            return
        seen_in_batch: set[bytes] = set()
        for raw, result in zip(raws, results, strict=True):
            event(f"code {result.code}")
            assert result.code in KNOWN_CODES and result.reason
            if raw == JUNK:
                assert not result.accepted and result.code == AdmissionCode.TRUNCATED
                continue
            assert result.tx_id == tx_id(raw)
            sender, nonce = sender_and_nonce(raw)
            queue = self.model.setdefault(sender, [])
            expected = self.committed(sender) + len(queue) + 1
            duplicate = raw in seen_in_batch or raw in queue or tx_id(raw) in self.committed_ids
            seen_in_batch.add(raw)
            clean = raw not in self.bad_raws and sender not in self.check.banned and not duplicate
            if clean and nonce < expected:
                assert result.code == AdmissionCode.NONCE_TOO_LOW, (result, expected)
            elif clean and nonce > expected:
                assert result.code == AdmissionCode.NONCE_GAP, (result, expected)
            elif clean and len(queue) >= CONFIG.max_txs_per_sender:
                assert result.code == AdmissionCode.SENDER_LIMIT
            elif clean and (
                len(self.order) >= CONFIG.max_txs
                or self.pending_bytes() + len(raw) > CONFIG.max_bytes
            ):
                assert result.code == AdmissionCode.MEMPOOL_FULL
            elif clean:
                assert result.accepted, result
                queue.append(raw)
                self.order.append(raw)
                self.origin[raw] = origin
            else:
                assert not result.accepted, result

    @rule(max_txs=st.integers(0, 15), max_bytes=st.integers(0, 15 * SIZES[1]))
    def reap(self, max_txs: int, max_bytes: int) -> None:
        reaped = self.pool.reap(max_txs, max_bytes)
        assert len(reaped) <= max_txs and sum(map(len, reaped)) <= max_bytes
        self.assert_valid_order(reaped)
        by_sender: dict[bytes, list[bytes]] = {}
        for raw in reaped:
            by_sender.setdefault(sender_and_nonce(raw)[0], []).append(raw)
        for sender, txs in by_sender.items():  # each sender's run is a prefix of its queue
            assert txs == self.model[sender][: len(txs)]

    @rule(peer=st.sampled_from(PEERS), max_txs=st.integers(1, 5))
    def gossip(self, peer: str, max_txs: int) -> None:
        cursor = self.cursors[peer]
        txs, next_cursor = self.pool.gossip_batch(cursor, max_txs, 2 * SIZES[1], peer=peer)
        assert next_cursor >= cursor and len(txs) <= max_txs
        assert all(self.origin[raw] != peer for raw in txs)
        self.assert_valid_order(txs)
        self.cursors[peer] = next_cursor

    @rule(
        block_txs=st.integers(0, 6),
        foreign=st.one_of(st.none(), st.integers(0, SENDERS - 1)),
        state_nonces=st.booleans(),
    )
    def commit(self, block_txs: int, foreign: int | None, state_nonces: bool) -> None:
        block = self.pool.reap(block_txs, 1 << 20)
        counts: dict[bytes, int] = {}
        for raw in block:
            sender = sender_and_nonce(raw)[0]
            counts[sender] = counts.get(sender, 0) + 1
        new_nonces = {sender: self.committed(sender) + count for sender, count in counts.items()}
        ids = [tx_id(raw) for raw in block]
        if foreign is not None:
            # Another proposer's block carries a conflicting transaction of this sender.
            sender = sender_key(foreign)
            nonce = new_nonces.get(sender, self.committed(sender)) + 1
            ids.append(tx_id(anchor(foreign, nonce, 2)))
            new_nonces[sender] = nonce
        stated = dict(new_nonces) if state_nonces or foreign is None else {}
        if foreign is not None:
            stated[sender_key(foreign)] = new_nonces[sender_key(foreign)]
        self.chain.nonces.update(new_nonces)
        self.committed_ids.update(ids)
        result = self.pool.update(ids, stated)
        stale = recheck = 0
        for sender in list(self.model):
            queue = self.model[sender]
            keep = [raw for raw in queue if sender_and_nonce(raw)[1] > self.committed(sender)]
            stale += len(queue) - len(keep) - counts.get(sender, 0)
            if sender in self.check.banned:
                recheck += len(keep)
                keep = []
            self.model[sender] = keep
        live = {raw for queue in self.model.values() for raw in queue}
        self.order = [raw for raw in self.order if raw in live]
        assert (result.committed_txs, result.stale_txs) == (len(block), stale)
        assert result.recheck_dropped_txs == recheck

    @rule(sender=st.integers(0, SENDERS - 1), banned=st.booleans())
    def ban(self, sender: int, banned: bool) -> None:
        if banned:
            self.check.banned.add(sender_key(sender))
        else:
            self.check.banned.discard(sender_key(sender))

    def assert_valid_order(self, txs: list[bytes]) -> None:
        """`txs` is a subsequence of the admission order (so each sender's in nonce order)."""
        position = 0
        for raw in txs:
            position = self.order.index(raw, position) + 1

    @invariant()
    def bounded_and_consistent(self) -> None:
        stats = self.pool.stats()
        assert stats.size_txs == len(self.order) <= CONFIG.max_txs
        assert stats.size_bytes == self.pending_bytes() <= CONFIG.max_bytes
        assert stats.log_entries <= 2 * stats.size_txs + 1_024
        assert stats.admitted_txs + sum(stats.refused_txs_by_code.values()) == self.submitted

    @invariant()
    def nonces_contiguous_without_duplicates(self) -> None:
        everything = self.pool.reap(10**6, 1 << 40)
        assert everything == self.order
        assert len({tx_id(raw) for raw in everything}) == len(everything)
        nonces: dict[bytes, list[int]] = {}
        for raw in everything:
            sender, nonce = sender_and_nonce(raw)
            nonces.setdefault(sender, []).append(nonce)
        for sender, pending in nonces.items():
            first = self.committed(sender) + 1
            assert pending == list(range(first, first + len(pending)))
            assert len(pending) <= CONFIG.max_txs_per_sender
            assert self.pool.pending_nonces(sender) == (first - 1, first - 1 + len(pending))
        assert self.pool.stats().senders == len(nonces)

    @invariant()
    def each_signature_verified_once(self) -> None:
        assert len(set(self.verifier.verified)) == len(self.verifier.verified)


MempoolMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMempoolMachine = MempoolMachine.TestCase
