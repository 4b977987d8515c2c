"""The outcome of admitting one transaction: stable codes and a human reason.

Codes are strings so that the stateful check (the application) can add its own without this
module knowing them; the mempool's own codes are the `AdmissionCode` members. They are part of
the RPC contract and never change meaning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

from emrchain.schema.verdicts import VERDICT_MESSAGES, Verdict


class AdmissionCode(StrEnum):
    """Codes the mempool itself assigns. Structural ones are the core's verdict names."""

    OK = "ok"
    # Structural (the core's Verdict, lower-cased name).
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    BAD_VERSION = "bad_version"
    WRONG_CHAIN = "wrong_chain"
    UNKNOWN_KIND = "unknown_kind"
    ZERO_SENDER = "zero_sender"
    PAYLOAD_LENGTH = "payload_length"
    FIELD_ZERO = "field_zero"
    FIELD_RANGE = "field_range"
    FIELD_LENGTH = "field_length"
    BAD_ENUM = "bad_enum"
    BAD_TEXT = "bad_text"
    BAD_IDENT = "bad_ident"
    BAD_SIGNATURE = "bad_signature"
    # Mempool rules.
    DUPLICATE = "duplicate"
    NONCE_TOO_LOW = "nonce_too_low"
    NONCE_GAP = "nonce_gap"
    SENDER_LIMIT = "sender_limit"
    MEMPOOL_FULL = "mempool_full"
    BATCH_TOO_LARGE = "batch_too_large"


class Admission(NamedTuple):
    """One transaction's admission result, in the order of the submitted batch."""

    tx_id: bytes
    """SHA-256 of the transaction; 32 zero bytes when it was never hashed (too_large,
    batch_too_large)."""
    accepted: bool
    code: str
    """An AdmissionCode value, or the stateful check's own code."""
    reason: str
    """Human-readable explanation for the client."""


ACCEPTED_REASON = "admitted to the mempool"
STATEFUL_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")
"""Codes a stateful check may return: short identifiers, so stats stay readable and bounded."""
ZERO_TX_ID = bytes(32)

VERDICT_CODES: dict[int, AdmissionCode] = {
    verdict: AdmissionCode(verdict.name.lower()) for verdict in Verdict if verdict != Verdict.OK
}
"""Verdict number -> code; a KeyError here at import means codes and Verdict drifted apart."""


def verdict_refusal(tx_id: bytes, verdict: int, size_bytes: int, max_tx_bytes: int) -> Admission:
    """The refusal for a transaction the core's structural check rejected."""
    reason = VERDICT_MESSAGES[Verdict(verdict)]
    if verdict == Verdict.TOO_LARGE:
        reason = f"{reason} ({size_bytes} > {max_tx_bytes})"
    return Admission(tx_id, False, VERDICT_CODES[verdict], reason)


def refuse(tx_id: bytes, code: AdmissionCode, reason: str) -> Admission:
    """A refusal with one of the mempool's own codes."""
    return Admission(tx_id, False, code, reason)


def nonce_too_low(tx_id: bytes, nonce: int, committed: int, next_nonce: int) -> Admission:
    """Refusal of a nonce below the sender's next one, saying whether it is already committed
    or taken by a pending transaction (the mempool does not replace pending transactions)."""
    if nonce <= committed:
        reason = f"nonce {nonce} is not above the sender's committed nonce {committed}"
    else:
        reason = (
            f"nonce {nonce} is taken by a pending transaction of the sender "
            f"(next nonce is {next_nonce})"
        )
    return refuse(tx_id, AdmissionCode.NONCE_TOO_LOW, reason)


def nonce_gap(tx_id: bytes, nonce: int, next_nonce: int) -> Admission:
    """Refusal of a nonce above the sender's next one (not parked; the sender resends)."""
    return refuse(
        tx_id,
        AdmissionCode.NONCE_GAP,
        f"nonce {nonce} leaves a gap: the sender's next nonce is {next_nonce}",
    )


def stateful_refusals(
    positions: Sequence[int], outcomes: Sequence[tuple[str, str]]
) -> dict[int, tuple[str, str]]:
    """Validate the stateful check's answer (before anything changes) and keep its refusals."""
    if len(outcomes) != len(positions):
        raise RuntimeError(
            f"stateful check returned {len(outcomes)} results for {len(positions)} transactions"
        )
    refusals: dict[int, tuple[str, str]] = {}
    for position, (code, reason) in zip(positions, outcomes, strict=True):
        if code == AdmissionCode.OK:
            continue
        if not isinstance(code, str) or not STATEFUL_CODE_PATTERN.fullmatch(code):
            raise RuntimeError(f"stateful check returned an invalid code {code!r}")
        if not isinstance(reason, str):
            raise RuntimeError(f"stateful check returned a non-str reason for code {code!r}")
        refusals[position] = (code, reason)
    return refusals
