"""admit_batch: acceptance, one specific test per refusal code, batching of the core calls,
signature verification once per node, and no change on bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import pytest

from emrchain.mempool import AdmissionCode, Mempool, MempoolConfig
from emrchain.mempool.admission import VERDICT_CODES
from emrchain.schema.verdicts import Verdict
from emrchain.types import TxKind
from tests.mempool.txs import (
    OTHER_CHAIN_ID,
    Chain,
    CountingVerifier,
    ScriptedCheck,
    anchor,
    bad_signature,
    envelope,
    make_pool,
    sender_key,
    tx_id,
)

KEY = hashlib.sha256(b"some key").digest()


def snapshot(pool: Mempool) -> tuple[object, ...]:
    """Everything observable about the pool's contents."""
    stats = pool.stats()
    return (
        stats.size_txs,
        stats.size_bytes,
        stats.senders,
        stats.latest_sequence,
        tuple(pool.reap(10**6, 1 << 40)),
    )


def anchor_payload(
    *,
    record_id: bytes = KEY,
    cid: bytes = b"\x01\x55\x12\x20",
    record_type: int = 2,
    size_bytes: int = 4096,
) -> bytes:
    """ANCHOR_RECORD payload bytes without validation, to build malformed transactions."""
    return (
        record_id
        + KEY
        + KEY
        + bytes([len(cid)])
        + cid
        + bytes([record_type])
        + size_bytes.to_bytes(8, "big")
    )


VERDICT_CASES: dict[Verdict, Callable[[], bytes]] = {
    Verdict.TOO_LARGE: lambda: anchor(0, 1) + bytes(5_000),
    Verdict.TRUNCATED: lambda: anchor(0, 1)[:-1],
    Verdict.TRAILING_BYTES: lambda: anchor(0, 1) + b"\x00",
    Verdict.BAD_VERSION: lambda: b"\x02" + anchor(0, 1)[1:],
    Verdict.WRONG_CHAIN: lambda: anchor(0, 1, chain_id=OTHER_CHAIN_ID),
    Verdict.UNKNOWN_KIND: lambda: envelope(200, b""),
    Verdict.ZERO_SENDER: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload(), sender=bytes(32)),
    Verdict.PAYLOAD_LENGTH: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload()[:-1]),
    Verdict.FIELD_ZERO: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload(record_id=bytes(32))),
    Verdict.FIELD_RANGE: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload(size_bytes=0)),
    Verdict.FIELD_LENGTH: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload(cid=b"\x01")),
    Verdict.BAD_ENUM: lambda: envelope(TxKind.ANCHOR_RECORD, anchor_payload(record_type=0)),
    Verdict.BAD_TEXT: lambda: envelope(TxKind.REVOKE_MEMBER, KEY + b"\x02\xff\xfe"),
    Verdict.BAD_IDENT: lambda: envelope(
        TxKind.REGISTER_ORGANIZATION, b"\x05UPPER" + b"\x04name" + KEY
    ),
}


def test_valid_sequence_is_admitted() -> None:
    pool = make_pool()
    txs = [anchor(0, 1), anchor(0, 2), anchor(1, 1), anchor(0, 3)]
    results = pool.admit_batch(txs)
    assert [(r.accepted, r.code) for r in results] == [(True, AdmissionCode.OK)] * 4
    assert [r.tx_id for r in results] == [tx_id(raw) for raw in txs]
    assert all(r.reason for r in results)
    stats = pool.stats()
    assert (stats.size_txs, stats.size_bytes, stats.senders) == (4, sum(map(len, txs)), 2)
    assert stats.admitted_txs == 4 and stats.refused_txs_by_code == {}
    assert pool.pending_nonces(sender_key(0)) == (0, 3)
    assert tx_id(txs[0]) in pool


def test_an_empty_batch_costs_nothing() -> None:
    verifier = CountingVerifier()
    pool = make_pool(verifier=verifier)
    assert pool.admit_batch([]) == []
    assert verifier.calls == [] and pool.stats().refused_txs_by_code == {}


@pytest.mark.parametrize("verdict", list(VERDICT_CASES), ids=lambda verdict: verdict.name)
def test_structural_refusal_has_the_verdict_code(verdict: Verdict) -> None:
    verifier = CountingVerifier()
    pool = make_pool(verifier=verifier)
    before = snapshot(pool)
    [result] = pool.admit_batch([VERDICT_CASES[verdict]()])
    assert not result.accepted
    assert result.code == verdict.name.lower() == VERDICT_CODES[verdict]
    assert result.reason
    assert snapshot(pool) == before
    assert verifier.calls == []  # structurally bad transactions are never verified
    assert pool.stats().refused_txs_by_code == {verdict.name.lower(): 1}


def test_too_large_reason_gives_the_sizes() -> None:
    pool = make_pool(replace(MempoolConfig(), max_tx_bytes=200, max_bytes=10_000))
    [result] = pool.admit_batch([anchor(0, 1)])
    assert result.code == AdmissionCode.TOO_LARGE
    assert f"({len(anchor(0, 1))} > 200)" in result.reason
    assert result.tx_id == bytes(32)


# --- one scenario per mempool refusal code: (pool, batch, index of the refused item) ---------


def _duplicate_in_batch() -> tuple[Mempool, list[bytes], int]:
    return make_pool(), [anchor(0, 1), anchor(0, 1)], 1


def _bad_signature() -> tuple[Mempool, list[bytes], int]:
    return make_pool(), [bad_signature(anchor(0, 1))], 0


def _nonce_too_low() -> tuple[Mempool, list[bytes], int]:
    chain = Chain()
    chain.nonces[sender_key(0)] = 4
    return make_pool(chain=chain), [anchor(0, 4)], 0


def _nonce_gap() -> tuple[Mempool, list[bytes], int]:
    return make_pool(), [anchor(0, 2)], 0


def _sender_limit() -> tuple[Mempool, list[bytes], int]:
    pool = make_pool(replace(MempoolConfig(), max_txs_per_sender=2))
    return pool, [anchor(0, 1), anchor(0, 2), anchor(0, 3)], 2


def _mempool_full() -> tuple[Mempool, list[bytes], int]:
    pool = make_pool(replace(MempoolConfig(), max_txs=2))
    return pool, [anchor(0, 1), anchor(1, 1), anchor(2, 1)], 2


def _batch_too_large() -> tuple[Mempool, list[bytes], int]:
    pool = make_pool(replace(MempoolConfig(), max_batch_txs=2))
    return pool, [anchor(0, 1), anchor(1, 1), anchor(2, 1)], 0


SCENARIOS: dict[AdmissionCode, Callable[[], tuple[Mempool, list[bytes], int]]] = {
    AdmissionCode.DUPLICATE: _duplicate_in_batch,
    AdmissionCode.BAD_SIGNATURE: _bad_signature,
    AdmissionCode.NONCE_TOO_LOW: _nonce_too_low,
    AdmissionCode.NONCE_GAP: _nonce_gap,
    AdmissionCode.SENDER_LIMIT: _sender_limit,
    AdmissionCode.MEMPOOL_FULL: _mempool_full,
    AdmissionCode.BATCH_TOO_LARGE: _batch_too_large,
}


@pytest.mark.parametrize("code", list(SCENARIOS), ids=str)
def test_mempool_refusal_code(code: AdmissionCode) -> None:
    pool, batch, index = SCENARIOS[code]()
    results = pool.admit_batch(batch)
    assert len(results) == len(batch)
    assert not results[index].accepted
    assert results[index].code == code
    assert results[index].reason
    assert pool.stats().refused_txs_by_code[code] >= 1


def test_every_refusal_code_has_a_test() -> None:
    tested = set(SCENARIOS) | {VERDICT_CODES[verdict] for verdict in VERDICT_CASES}
    assert tested == set(AdmissionCode) - {AdmissionCode.OK}


# --- details of each rule --------------------------------------------------------------------


def test_duplicates_of_pending_and_committed_transactions() -> None:
    verifier = CountingVerifier()
    pool = make_pool(verifier=verifier)
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    [again] = pool.admit_batch([anchor(0, 2)])
    assert (again.code, again.reason) == (AdmissionCode.DUPLICATE, "already pending")
    pool.update([tx_id(anchor(0, 1))], {sender_key(0): 1})
    [committed] = pool.admit_batch([anchor(0, 1)])
    assert committed.code == AdmissionCode.DUPLICATE
    assert "committed" in committed.reason
    assert verifier.calls == [2]


def test_nonce_too_low_when_taken_by_a_pending_transaction() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1)])
    [replacement] = pool.admit_batch([anchor(0, 1, variant=1)])
    assert replacement.code == AdmissionCode.NONCE_TOO_LOW
    assert "pending" in replacement.reason
    results = pool.admit_batch([anchor(0, 2), anchor(0, 2, variant=1)])
    assert [r.code for r in results] == [AdmissionCode.OK, AdmissionCode.NONCE_TOO_LOW]


def test_nonce_zero_is_too_low_for_a_new_sender() -> None:
    [result] = make_pool().admit_batch([anchor(0, 0)])
    assert result.code == AdmissionCode.NONCE_TOO_LOW
    assert "committed nonce 0" in result.reason


def test_a_refused_transaction_opens_a_gap_for_the_later_nonces_of_its_sender() -> None:
    pool = make_pool()
    results = pool.admit_batch([bad_signature(anchor(0, 1)), anchor(0, 2), anchor(1, 1)])
    assert [r.code for r in results] == [
        AdmissionCode.BAD_SIGNATURE,
        AdmissionCode.NONCE_GAP,
        AdmissionCode.OK,
    ]
    assert "next nonce is 1" in results[1].reason


def test_a_batch_may_carry_consecutive_nonces_in_any_order_only_if_they_arrive_in_order() -> None:
    pool = make_pool()
    results = pool.admit_batch([anchor(0, 2), anchor(0, 1)])
    assert [r.code for r in results] == [AdmissionCode.NONCE_GAP, AdmissionCode.OK]


def test_full_pool_refuses_without_evicting_and_without_verifying() -> None:
    verifier = CountingVerifier()
    pool = make_pool(replace(MempoolConfig(), max_txs=2), verifier=verifier)
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    before = snapshot(pool)
    results = pool.admit_batch([anchor(1, 1), anchor(0, 3)])
    assert [r.code for r in results] == [AdmissionCode.MEMPOOL_FULL] * 2
    assert "max_txs 2" in results[0].reason
    assert snapshot(pool) == before
    assert verifier.calls == [2]  # only the first batch was verified


def test_full_by_bytes() -> None:
    size = len(anchor(0, 1))
    pool = make_pool(replace(MempoolConfig(), max_tx_bytes=size, max_bytes=2 * size + 10))
    results = pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(2, 1)])
    assert [r.code for r in results] == [AdmissionCode.OK] * 2 + [AdmissionCode.MEMPOOL_FULL]
    assert pool.stats().size_bytes == 2 * size


def test_batch_too_large_is_refused_whole_and_unhashed() -> None:
    verifier = CountingVerifier()
    pool = make_pool(replace(MempoolConfig(), max_batch_txs=2), verifier=verifier)
    results = pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(2, 1)])
    assert {(r.accepted, r.code, r.tx_id) for r in results} == {
        (False, AdmissionCode.BATCH_TOO_LARGE, bytes(32))
    }
    assert "max_batch_txs 2" in results[0].reason
    assert len(pool) == 0 and verifier.calls == []
    assert [r.code for r in pool.admit_batch([anchor(0, 1), anchor(1, 1)])] == ["ok", "ok"]


def test_stateful_refusal_passes_the_application_code_through() -> None:
    check = ScriptedCheck()
    check.banned.add(sender_key(1))
    pool = make_pool(check=check)
    results = pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(1, 2), anchor(0, 2)])
    # The stateful check runs before the exact nonce check, so both of sender 1 get its code.
    assert [r.code for r in results] == ["ok", "sender_banned", "sender_banned", "ok"]
    assert results[1].reason == "sender is banned"
    assert check.calls == [4]  # one call for the whole batch
    assert pool.stats().refused_txs_by_code == {"sender_banned": 2}


def test_stateful_check_sees_only_signature_valid_screened_transactions() -> None:
    check = ScriptedCheck()
    pool = make_pool(check=check)
    pool.admit_batch([bad_signature(anchor(0, 1)), anchor(1, 5), b"junk", anchor(2, 1)])
    assert check.calls == [1]


def test_one_core_call_per_batch() -> None:
    verifier = CountingVerifier()
    pool = make_pool(verifier=verifier)
    pool.admit_batch([anchor(sender, nonce) for sender in range(5) for nonce in (1, 2)])
    assert verifier.calls == [10]


def test_each_signature_is_verified_once() -> None:
    verifier = CountingVerifier()
    check = ScriptedCheck()
    check.banned.add(sender_key(0))
    pool = make_pool(check=check, verifier=verifier)
    bad = bad_signature(anchor(1, 1))
    pool.admit_batch([anchor(0, 1), bad])  # verified; refused by the application / signature
    check.banned.clear()
    results = pool.admit_batch([anchor(0, 1), bad])  # resubmitted (or re-gossiped)
    assert [r.code for r in results] == [AdmissionCode.OK, AdmissionCode.BAD_SIGNATURE]
    assert "known" in results[1].reason
    assert verifier.verified == [anchor(0, 1), bad]
    stats = pool.stats()
    assert (stats.signatures_verified, stats.signature_cache_hits) == (2, 1)


def test_a_recheck_dropped_transaction_is_not_verified_again() -> None:
    verifier = CountingVerifier()
    check = ScriptedCheck()
    pool = make_pool(check=check, verifier=verifier)
    pool.admit_batch([anchor(0, 1)])
    check.banned.add(sender_key(0))
    assert pool.update([]).recheck_dropped_txs == 1
    check.banned.clear()
    assert pool.admit_batch([anchor(0, 1)])[0].accepted
    assert verifier.calls == [1]


def test_the_seen_cache_is_bounded_and_forgetting_only_costs_a_verification() -> None:
    verifier = CountingVerifier()
    check = ScriptedCheck()
    check.banned.add(sender_key(0))
    pool = make_pool(replace(MempoolConfig(), seen_cache_entries=1), check=check, verifier=verifier)
    pool.admit_batch([anchor(0, 1)])
    pool.admit_batch([anchor(1, 1)])  # evicts the first id
    assert pool.stats().seen_cache_entries == 1
    check.banned.clear()
    assert pool.admit_batch([anchor(0, 1)])[0].accepted
    assert verifier.calls == [1, 1, 1]


def test_non_bytes_item_raises_and_changes_nothing() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1)])
    before = snapshot(pool)
    with pytest.raises(TypeError):
        pool.admit_batch([anchor(0, 2), "not bytes"])  # type: ignore[list-item]
    assert snapshot(pool) == before


@pytest.mark.parametrize(
    "answer",
    [
        lambda txs: [("ok", "")] * (len(txs) + 1),  # wrong length
        lambda txs: [("Not A Code", "x")] * len(txs),
        lambda txs: [("refused", 7)] * len(txs),
    ],
)
def test_a_misbehaving_stateful_check_raises_and_changes_nothing(
    answer: Callable[[list[bytes]], list[tuple[str, object]]],
) -> None:
    pool = Mempool(MempoolConfig(), b"emrchain-mempool-test", Chain(), answer)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        pool.admit_batch([anchor(0, 1)])
    assert snapshot(pool) == snapshot(make_pool())


@pytest.mark.parametrize("code", list(SCENARIOS), ids=str)
def test_a_batch_check_given_by_the_caller_admits_exactly_as_without(code: AdmissionCode) -> None:
    from emrchain import _core

    pool, batch, _ = SCENARIOS[code]()
    twin, _, _ = SCENARIOS[code]()
    config = pool.config
    checked = _core.check_transactions(batch, pool.chain_id, config.max_tx_bytes)
    assert pool.admit_batch(batch, checked=checked) == twin.admit_batch(batch)
    assert snapshot(pool) == snapshot(twin)


def test_a_batch_check_of_another_length_is_refused_before_any_change() -> None:
    from emrchain import _core

    pool = make_pool()
    batch = [anchor(0, 1), anchor(0, 2)]
    checked = _core.check_transactions(batch[:1], pool.chain_id, pool.config.max_tx_bytes)
    before = snapshot(pool)
    with pytest.raises(ValueError, match="checked results for 1 items, the batch has 2"):
        pool.admit_batch(batch, checked=checked)
    assert snapshot(pool) == before
