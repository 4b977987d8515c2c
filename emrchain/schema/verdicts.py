"""Verdict codes of the stateless checks, and the exception types of the codec and the core.

The codec (`codec.py`) and both twins of the core (`emrchain/_core`) import these from here, so
they return the same codes and raise the very same exception classes.
"""

from __future__ import annotations

from enum import IntEnum


class Verdict(IntEnum):
    """Result of checking one transaction; the first failing check in spec order wins.

    The numbers are part of the RPC and mempool contract (`docs/spec/encoding.md` §5) and never
    change meaning.
    """

    OK = 0
    TOO_LARGE = 1
    TRUNCATED = 2
    TRAILING_BYTES = 3
    BAD_VERSION = 4
    WRONG_CHAIN = 5
    UNKNOWN_KIND = 6
    ZERO_SENDER = 7
    PAYLOAD_LENGTH = 8
    FIELD_ZERO = 9
    FIELD_RANGE = 10
    FIELD_LENGTH = 11
    BAD_ENUM = 12
    BAD_TEXT = 13
    BAD_IDENT = 14
    BAD_SIGNATURE = 15


VERDICT_MESSAGES: dict[Verdict, str] = {
    Verdict.OK: "valid",
    Verdict.TOO_LARGE: "transaction is longer than max_tx_bytes",
    Verdict.TRUNCATED: "transaction ends before its envelope is complete",
    Verdict.TRAILING_BYTES: "bytes follow the signature",
    Verdict.BAD_VERSION: "unsupported envelope version",
    Verdict.WRONG_CHAIN: "transaction is for another chain",
    Verdict.UNKNOWN_KIND: "unknown transaction kind",
    Verdict.ZERO_SENDER: "sender public key is all zeros",
    Verdict.PAYLOAD_LENGTH: "payload length does not match its fields",
    Verdict.FIELD_ZERO: "a required key or hash field is all zeros",
    Verdict.FIELD_RANGE: "an integer field is out of range",
    Verdict.FIELD_LENGTH: "a variable-length field has a length out of range",
    Verdict.BAD_ENUM: "an enumerated field has an unknown value",
    Verdict.BAD_TEXT: "a text field is not valid UTF-8",
    Verdict.BAD_IDENT: "an identifier has a character outside [a-z0-9._-]",
    Verdict.BAD_SIGNATURE: "signature does not verify",
}


class CoreError(ValueError):
    """Base class of the errors the core raises for bad arguments (never for bad tx bytes,
    which get a Verdict instead)."""


class LimitError(CoreError):
    """An argument exceeds a hard limit (batch size, max_tx_bytes, proof depth, ...)."""


class MerkleError(CoreError):
    """A merkle root or proof was requested with impossible arguments."""


class TxDecodeError(CoreError):
    """Raised by the reference decoder; carries the verdict and, where known, the field."""

    def __init__(self, verdict: Verdict, detail: str = "") -> None:
        self.verdict = verdict
        self.detail = detail
        message = VERDICT_MESSAGES[verdict]
        super().__init__(f"{verdict.name}: {message}" + (f" ({detail})" if detail else ""))
