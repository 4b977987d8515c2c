"""What a node's replies mean to the client: the error classes, the result types, and strict
parsing of the JSON replies of `docs/spec/rpc.md`.

A node's reply is input like any other: every field is checked for presence, type and length
before use, and anything off becomes a `BadReplyError` naming the route and the field. Error
replies (`{"error": {"code", "message"}}`) become a `RequestFailedError` subclass chosen by the
HTTP status, carrying the status and the code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from emrchain.client.envelope import SealedRecord
from emrchain.state.codes import code_name

MAX_JSON_REPLY_BYTES = 4 * 1024 * 1024
"""Largest JSON reply read (a full access trail page is well below it)."""
MAX_ERROR_MESSAGE_CHARACTERS = 300
"""A node's error message is shown to a person on one line; longer ones are cut."""
MAX_ERROR_CODE_CHARACTERS = 64


class EmrClientError(Exception):
    """Anything that went wrong talking to a node; the message is one line for a person."""


class NodeUnreachableError(EmrClientError):
    """The node could not be reached, or did not answer in time."""


class BadReplyError(EmrClientError):
    """The node answered something that is not what the API promises."""


class RequestFailedError(EmrClientError):
    """The node answered with an error (`{"error": {"code", "message"}}` and HTTP status)."""

    def __init__(self, status: int, code: str, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s: int | None = None
        """The reply's `Retry-After` (429, a busy 503): when the node expects to serve again."""


# The names the RPC contract uses for its statuses (no "Error" suffix: they read as answers).
class BadRequest(RequestFailedError):  # noqa: N818
    """400: malformed input."""


class Unauthenticated(RequestFailedError):  # noqa: N818
    """401: stale, replayed, forged or unknown-key request."""


class AccessDenied(RequestFailedError):  # noqa: N818
    """403: not allowed by consent or role."""


class NotFound(RequestFailedError):  # noqa: N818
    """404: unknown record, transaction, account, ..."""


class Conflict(RequestFailedError):  # noqa: N818
    """409: conflict, or the wrong node for this request."""


class Gone(RequestFailedError):  # noqa: N818
    """410: the record was erased."""


class TooLarge(RequestFailedError):  # noqa: N818
    """413: the request body is larger than the node accepts."""


class RateLimited(RequestFailedError):  # noqa: N818
    """429: over the client address's or the member's budget (see `retry_after_s`)."""


class Unavailable(RequestFailedError):  # noqa: N818
    """503: a storage backend of the node is unavailable, or the node is busy."""


class TimedOut(RequestFailedError):  # noqa: N818
    """504: the node could not finish in time (a read whose access event was not committed in
    time was not served)."""


ERRORS_BY_STATUS: dict[int, type[RequestFailedError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: AccessDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
    504: TimedOut,
}


class SubmissionRefusedError(EmrClientError):
    """The node's mempool refused the transaction (it was not submitted)."""


class TransactionRefusedError(EmrClientError):
    """The transaction was committed, but execution refused it: it changed nothing."""

    def __init__(self, tx_id: bytes, code: int, message: str) -> None:
        self.tx_id = tx_id
        self.code = code
        self.code_name = code_name(code)
        super().__init__(f"transaction {tx_id.hex()} refused: {self.code_name}: {message}")


class CommitTimeoutError(EmrClientError):
    """A transaction was not committed in time (it may still be, later)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The mempool's answer to one submitted transaction."""

    tx_id: bytes
    accepted: bool
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Committed:
    """A transaction executed with result code 0 (OK) at `height`."""

    tx_id: bytes
    height: int
    result_code: int


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record uploaded and anchored: its ids, where it lives, the anchor's height."""

    record_id: bytes
    patient_id: bytes
    anchor_tx_id: bytes
    cid_text: str
    size_bytes: int
    height: int
    custodians: tuple[str, ...] = ()
    """The custodians that kept the record (their node checked and stored its wrap)."""
    custody_failures: Mapping[str, str] = field(default_factory=dict)
    """Custodians whose node did not: organisation id → why."""


@dataclass(frozen=True, slots=True)
class RecordRead:
    """A decrypted record and the ACCESS_EVENT transaction that put the read on chain (the
    node serves a read only once that event is committed, at `access_event_height`)."""

    record_id: bytes
    patient_id: bytes
    plaintext: bytes = b""
    access_event_tx_id: bytes = bytes(32)
    access_event_height: int = 0
    status: str = "current"
    """current, superseded or entered-in-error (`records.md` §11): a superseded record is
    still served; `superseded_by` names what replaced or amended it."""
    superseded_by: tuple[tuple[bytes, str], ...] = ()
    """(record id, reason) of each record amending this one, oldest first."""


def one_line(text: object) -> str:
    line = " ".join(str(text).split())
    if len(line) > MAX_ERROR_MESSAGE_CHARACTERS:
        return line[:MAX_ERROR_MESSAGE_CHARACTERS] + "..."
    return line


def json_object(document: Any, what: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise BadReplyError(f"{what}: the reply is not a JSON object")
    return document


def _outcome_error(outcome: dict[str, Any]) -> dict[str, Any] | None:
    """The node's code and message of a /fhir OperationOutcome (`docs/spec/fhir.md`)."""
    issues = outcome.get("issue")
    issue = issues[0] if isinstance(issues, list) and issues else None
    if not isinstance(issue, dict):
        return None
    details = issue.get("details")
    codings = details.get("coding") if isinstance(details, dict) else None
    coding = codings[0] if isinstance(codings, list) and codings else None
    code = coding.get("code") if isinstance(coding, dict) else issue.get("code")
    return {"code": code, "message": issue.get("diagnostics")}


def error_from_reply(status: int, document: Any, what: str) -> RequestFailedError:
    """The exception an error reply stands for (its class chosen by the HTTP status)."""
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(document, dict) and document.get("resourceType") == "OperationOutcome":
        error = _outcome_error(document)
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(code, str) or not isinstance(message, str):
        code, message = "http_error", "the reply has no JSON error body"
    kind = ERRORS_BY_STATUS.get(status, RequestFailedError)
    return kind(status, one_line(code)[:MAX_ERROR_CODE_CHARACTERS], one_line(message), what)


def text_field(document: Any, name: str, what: str) -> str:
    value = json_object(document, what).get(name)
    if not isinstance(value, str):
        raise BadReplyError(f"{what}: {name} is missing or not a string")
    return value


def integer_field(document: Any, name: str, what: str) -> int:
    value = json_object(document, what).get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise BadReplyError(f"{what}: {name} is missing or not an unsigned 64-bit integer")
    return value


def hex_field(document: Any, name: str, what: str, length: int) -> bytes:
    text = text_field(document, name, what)
    if len(text) != 2 * length:
        raise BadReplyError(f"{what}: {name} must be {length} bytes of hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadReplyError(f"{what}: {name} is not hex") from None


def parse_verdicts(document: Any, tx_ids: list[bytes]) -> list[Verdict]:
    """One verdict per submitted transaction, in order, each for the id we computed."""
    what = "POST /txs"
    results = json_object(document, what).get("results")
    if not isinstance(results, list) or len(results) != len(tx_ids):
        raise BadReplyError(f"{what}: expected a list of {len(tx_ids)} results")
    verdicts = []
    for result, tx_id in zip(results, tx_ids, strict=True):
        if hex_field(result, "tx_id", what, 32) != tx_id:
            raise BadReplyError(f"{what}: a result names another transaction")
        accepted = json_object(result, what).get("accepted")
        if not isinstance(accepted, bool):
            raise BadReplyError(f"{what}: accepted is missing or not a boolean")
        code = one_line(text_field(result, "code", what))
        reason = one_line(text_field(result, "reason", what))
        verdicts.append(Verdict(tx_id, accepted, code, reason))
    return verdicts


def parse_committed(document: Any, tx_id: bytes) -> Committed:
    """A committed transaction's outcome; TransactionRefusedError if its code is not 0."""
    what = "GET /txs/{id}"
    height = integer_field(document, "height", what)
    code = integer_field(document, "result_code", what)
    if code != 0:
        message = document.get("result")
        raise TransactionRefusedError(tx_id, code, one_line(message or "no message"))
    return Committed(tx_id, height, code)


PATIENT_RECIPIENT = "<patient>"
"""The name of the patient's wrap among a sealed record's wraps; the others are named by
custodian organisation id, whose alphabet ([a-z0-9._-]) has no "<", so no id is this name."""


class CustodyFailedError(EmrClientError):
    """A record was anchored, but no custodian's node kept it."""


@dataclass(frozen=True, slots=True)
class Custodian:
    organization_id: str
    custody_key: bytes
    node_address: str | None


@dataclass(frozen=True, slots=True)
class CustodyPlan:
    patient_encryption_key: bytes
    custodians: tuple[Custodian, ...]


def parse_custody_plan(document: Any, record_id: bytes, patient_id: bytes) -> CustodyPlan:
    """`GET /custody-set`: for this record and patient, custodians with keys and addresses."""
    what = "GET /custody-set"
    if hex_field(document, "record_id", what, 32) != record_id or (
        hex_field(document, "patient_id", what, 32) != patient_id
    ):
        raise BadReplyError(f"{what}: the reply is for another record or patient")
    items = json_object(document, what).get("custodians")
    if not isinstance(items, list) or not items:
        raise BadReplyError(f"{what}: no custodians")
    custodians = []
    for item in items:
        address = json_object(item, what).get("node_address")
        if address is not None and not isinstance(address, str):
            raise BadReplyError(f"{what}: node_address is not a string")
        custodians.append(
            Custodian(
                text_field(item, "organization_id", what),
                hex_field(item, "custody_key", what, 32),
                address,
            )
        )
    return CustodyPlan(hex_field(document, "patient_encryption_key", what, 32), tuple(custodians))


def check_stored(document: Any, sealed: SealedRecord) -> None:
    """The custodian's reply must describe exactly the ciphertext we sent."""
    what = "PUT /records/{id}/custody"
    for name, expected in (
        ("cid", sealed.cid_text),
        ("ciphertext_sha256", sealed.ciphertext_sha256.hex()),
        ("size", sealed.size),
    ):
        if json_object(document, what).get(name) != expected:
            raise BadReplyError(f"{what}: the node stored something else ({name} differs)")


@dataclass(frozen=True, slots=True)
class ServedRecord:
    """What a read returns before the client opens it."""

    patient_id: bytes
    ciphertext: bytes
    wrapped_key: bytes
    access_event_height: int
    status: str = "current"
    superseded_by: tuple[tuple[bytes, str], ...] = ()


_STATUSES = frozenset(("current", "superseded", "entered-in-error"))


def _amendment_fields(document: Any, what: str) -> tuple[str, tuple[tuple[bytes, str], ...]]:
    """The read's amendment status; a node from before amendments sends none: current."""
    status = document.get("status", "current")
    if status not in _STATUSES:
        raise BadReplyError(f"{what}: unknown record status {one_line(status)}")
    items = document.get("superseded_by", [])
    if not isinstance(items, list):
        raise BadReplyError(f"{what}: superseded_by is not a list")
    links = tuple(
        (hex_field(item, "record_id", what, 32), text_field(item, "reason", what)) for item in items
    )
    return status, links


def parse_served_record(document: Any, access_event_tx_id: bytes) -> ServedRecord:
    """A read's reply: it names our access event, and its ciphertext has its anchored hash."""
    what = "GET /records/{id}"
    if hex_field(document, "access_event_tx_id", what, 32) != access_event_tx_id:
        raise BadReplyError(f"{what}: the node names another access event than ours")
    wrapped_key = hex_field(document, "wrapped_key", what, 80)
    patient_id = hex_field(document, "patient_id", what, 32)
    height = integer_field(document, "access_event_height", what)
    if height < 1:
        raise BadReplyError(f"{what}: the access event is not committed (height {height})")
    try:
        ciphertext = base64.b64decode(text_field(document, "ciphertext", what), validate=True)
    except binascii.Error:
        raise BadReplyError(f"{what}: ciphertext is not base64") from None
    if hashlib.sha256(ciphertext).digest() != hex_field(document, "ciphertext_sha256", what, 32):
        raise BadReplyError(f"{what}: the ciphertext does not match its anchored hash")
    return ServedRecord(
        patient_id, ciphertext, wrapped_key, height, *_amendment_fields(document, what)
    )


async def read_bounded_reply(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The reply body, refusing (before reading it all) one longer than `limit` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise BadReplyError(f"{what}: reply of {response.content_length} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BadReplyError(f"{what}: reply exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
