"""`EmrClient`: the async client of a node's RPC API (`docs/spec/rpc.md`).

Everything secret stays here: records are sealed and opened in this process, data keys are
wrapped for grantees here, and the node only ever receives ciphertext, wraps sealed to public
keys and signed transactions. Requests that touch medical data are signed with the member's key
(`emrchain.api.signing.sign_request`); every reply is size-bounded and checked before use, and
every failure is an `EmrClientError` subclass with a one-line message.

Signed requests are bound to the chain and to the node they go to: the client asks
`GET /status` once for both (`chain_id`, `node_id`). With `https://` the node's certificate is
checked against the system's CAs or `tls.ca_file`, and `tls.certificate_file` is presented to
a node that asks for client certificates.

Nonces: the first `next_nonce()` asks `GET /accounts/{key}` for the sender's next nonce, then a
local counter hands out the following ones, so several transactions can be submitted back to
back. After a refusal the counter is forgotten and worked out again (`forget_nonce`), but the
node's `next_nonce` is only a lower bound: it counts the transactions pending in *its* mempool,
and a node that restarted has lost those it had not yet gossiped, and may not yet have those
its peers hold. So the client never signs a second transaction with a nonce it has used: it
keeps every transaction it sent whose fate it does not know (accepted or unanswered, not yet
committed: `unconfirmed`), drops those at or below the committed nonce, sends the node again,
byte for byte, those at or above the node's next nonce, and continues after the highest. A
re-sent transaction is the same transaction (same id), so it can commit only once, and no 200
is ever given for a transaction whose nonce another one of ours holds (docs/spec/rpc.md
§Acknowledgements).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yarl

from emrchain.api.signing import HEADER_ACCESS_EVENT, sign_request
from emrchain.client import transactions
from emrchain.client.envelope import (
    DEFAULT_MAX_PLAINTEXT_BYTES,
    EnvelopeError,
    SealedRecord,
    new_record_id,
    open_record,
    seal_record,
)
from emrchain.client.export import ExportSummary, export_patient
from emrchain.client.fhir_content import (
    NotFhirError,
    encode_resource,
    fhir_resource_of,
    record_type_of,
)
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import (
    MAX_JSON_REPLY_BYTES,
    PATIENT_RECIPIENT,
    BadReplyError,
    Committed,
    CommitTimeoutError,
    Conflict,
    CustodyFailedError,
    EmrClientError,
    NodeUnreachableError,
    NotFound,
    RecordRead,
    RequestFailedError,
    StoredRecord,
    SubmissionRefusedError,
    TimedOut,
    Unauthenticated,
    Unavailable,
    Verdict,
    check_stored,
    error_from_reply,
    hex_field,
    integer_field,
    json_object,
    parse_committed,
    parse_custody_plan,
    parse_served_record,
    parse_verdicts,
    read_bounded_reply,
    text_field,
)
from emrchain.schema import AmendmentReason, ErasureReason, RecordType, ReviewOutcome
from emrchain.types.transaction import Transaction

DEFAULT_TIMEOUT_S = 30.0
MAX_UNCONFIRMED_TXS = 10_000
"""Transactions of unknown fate one client keeps to send again; more: wait for commits."""
STILL_ALIVE_CODES = frozenset({"duplicate", "nonce_too_low"})
"""Refusals of a re-sent transaction that need nothing more: the node has it (pending or
committed), or its nonce is already used (by it, since we never sign two with one nonce)."""
NOT_ADMITTED_CODES = frozenset({"busy", "too_many_txs_waiting", "too_many_reads_waiting"})
"""5xx refusals a node gives before it admits anything (any 4xx is one too)."""
CONNECT_TIMEOUT_S = 5.0
DEFAULT_COMMIT_TIMEOUT_S = 60.0
MAX_BATCH_TXS = 1000
"""Transactions per POST /txs (the node's default `[rpc] max_batch_txs`); longer lists are
sent in several requests."""
DEFAULT_TRAIL_LIMIT = 100
MAX_TRAIL_LIMIT = 1000
"""The node's bound on one page of an access trail."""
_POLL_INITIAL_S = 0.05
_POLL_MAXIMUM_S = 0.5
EXPECT_CONTINUE_BYTES = 64 * 1024
"""Bodies from this size on are sent after the node's `100 Continue`: a refusal (a bad
signature, a body over the route's cap, a rate limit) then costs no upload."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How the client checks an https:// node, and the certificate it presents if asked."""

    ca_file: Path | None = None
    """PEM CA certificates the node's certificate must chain to; None: the system's."""
    certificate_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        if self.key_file is not None and self.certificate_file is None:
            raise ValueError("a client key needs its client certificate")
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certificate_file is not None:
            context.load_cert_chain(self.certificate_file, self.key_file)
        return context


class EmrClient:
    """One member talking to one node. Use as `async with EmrClient(...) as client:`."""

    def __init__(
        self,
        base_url: str,
        identity: MemberIdentity,
        chain_id: bytes | None = None,
        *,
        node_id: bytes | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
        tls: TlsOptions | None = None,
        fallback_addresses: tuple[str, ...] = (),
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.identity = identity
        self._chain_id = chain_id
        self._node_id = node_id
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=CONNECT_TIMEOUT_S)
        self._max_plaintext_bytes = max_plaintext_bytes
        # base64 of the largest envelope, plus room for the JSON around it.
        self._max_record_reply_bytes = (max_plaintext_bytes + 61 + 2) // 3 * 4 + 64 * 1024
        self._session: aiohttp.ClientSession | None = None
        self._next_nonce: int | None = None
        self._nonce_lock = asyncio.Lock()
        self.unconfirmed: dict[int, Transaction] = {}
        """Nonce -> transaction sent whose fate is unknown (module docstring)."""
        self.fallback_addresses: list[str] = list(fallback_addresses)
        """Other nodes to ask for a record's custodians when this one is down."""

    async def __aenter__(self) -> EmrClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ transport

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        signed: bool = False,
        headers: dict[str, str] | None = None,
        limit: int = MAX_JSON_REPLY_BYTES,
    ) -> Any:
        """Send one request; the decoded JSON reply, or the error the reply describes.

        A signed request the node refuses as timestamped before its replay horizon (it
        restarted less than a second after accepting a request, docs/spec/rpc.md) was not
        accepted, so it is signed anew and sent once more after the reply's Retry-After, when
        that is within this client's timeout."""
        try:
            return await self._request_once(method, path, body, signed, headers, limit)
        except Unauthenticated as error:
            wait_s = error.retry_after_s
            total_s = self._timeout.total or DEFAULT_TIMEOUT_S
            if not signed or error.code != "stale_request" or wait_s is None or wait_s > total_s:
                raise
            await asyncio.sleep(wait_s)
            return await self._request_once(method, path, body, signed, headers, limit)

    async def _request_once(
        self,
        method: str,
        path: str,
        body: bytes,
        signed: bool,
        headers: dict[str, str] | None,
        limit: int,
    ) -> Any:
        all_headers = dict(headers or {})
        if signed:
            chain_id, node_id = await self.chain_id(), await self.node_id()
            now_ms = time.time_ns() // 1_000_000
            signature = sign_request(
                self.identity.signer, chain_id, node_id, method, path, body, now_ms
            )
            all_headers.update(signature.as_dict())
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._tls.context() if self._tls is not None else True
            )
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        # encoded=True: the path goes out byte for byte as signed (no re-quoting).
        url = yarl.URL(self.base_url + path, encoded=True)
        what = f"{method} {path.split('?')[0]}"
        try:
            async with self._session.request(
                method,
                url,
                data=body if body else None,
                headers=all_headers,
                expect100=len(body) >= EXPECT_CONTINUE_BYTES,
            ) as response:
                raw = await read_bounded_reply(response, limit, what)
                status = response.status
                retry_after = response.headers.get("Retry-After", "")
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            reason = str(error) or type(error).__name__
            raise NodeUnreachableError(f"{what}: cannot reach {self.base_url}: {reason}") from None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            if status >= 400:  # e.g. a proxy's HTML error page: the status still says what
                raise error_from_reply(status, None, what) from None
            raise BadReplyError(f"{what}: HTTP {status} with a reply that is not JSON") from None
        if status >= 400:
            reply_error = error_from_reply(status, document, what)
            reply_error.retry_after_s = int(retry_after) if retry_after.isdecimal() else None
            raise reply_error
        return document

    async def chain_id(self) -> bytes:
        """The chain id requests and transactions are signed for (asked once from /status)."""
        if self._chain_id is None:
            await self._learn_identity()
        assert self._chain_id is not None
        return self._chain_id

    async def node_id(self) -> bytes:
        """The id of the node this client talks to (asked once from /status): a signed request
        names it, so it is accepted by that node only."""
        if self._node_id is None:
            await self._learn_identity()
        assert self._node_id is not None
        return self._node_id

    async def _learn_identity(self) -> None:
        status = await self.status()
        if self._chain_id is None:
            self._chain_id = text_field(status, "chain_id", "GET /status").encode("ascii")
        if self._node_id is None:
            self._node_id = hex_field(status, "node_id", "GET /status", 32)

    async def status(self) -> dict[str, Any]:
        return json_object(await self._request("GET", "/status"), "GET /status")

    async def account(self, member_key: bytes | None = None) -> dict[str, Any]:
        """`GET /accounts/{key}` (default: this identity's key), signed: of another member's
        key the node tells only its encryption key (and whether it is a current, active member
        key); nonces only of our own."""
        key = (member_key or self.identity.member_key).hex()
        reply = await self._request("GET", f"/accounts/{key}", signed=True)
        return json_object(reply, "GET /accounts")

    # ------------------------------------------------------------------ transactions

    async def next_nonce(self) -> int:
        """The nonce for this identity's next transaction (see the module docstring)."""
        async with self._nonce_lock:
            if self._next_nonce is None:
                self._next_nonce = await self._reconcile_nonce()
            if len(self.unconfirmed) >= MAX_UNCONFIRMED_TXS:  # ask which have committed since
                account = await self.account()
                self._confirm_through(integer_field(account, "committed_nonce", "GET /accounts"))
            if len(self.unconfirmed) >= MAX_UNCONFIRMED_TXS:
                raise EmrClientError(
                    f"{len(self.unconfirmed)} transactions sent are not known to be committed; "
                    "wait for their commits before sending more"
                )
            nonce = self._next_nonce
            self._next_nonce += 1
            return nonce

    def forget_nonce(self) -> None:
        """Work the next nonce out again (after a refusal broke the local sequence): from the
        node's account and the transactions still unconfirmed, never below them."""
        self._next_nonce = None

    async def _reconcile_nonce(self) -> int:
        """The next nonce free for a new transaction; first the node is sent again those of our
        unconfirmed transactions it does not hold (a restart lost them, or gossip has not
        brought them back yet)."""
        account = await self.account()
        committed = integer_field(account, "committed_nonce", "GET /accounts")
        node_next = integer_field(account, "next_nonce", "GET /accounts")
        self._confirm_through(committed)
        nonces = sorted(nonce for nonce in self.unconfirmed if nonce >= node_next)
        missing = [self.unconfirmed[nonce] for nonce in nonces]
        if missing:
            await self._send_again(missing)
        return max([node_next, *(nonce + 1 for nonce in self.unconfirmed)])

    def _confirm_through(self, nonce: int) -> None:
        """Our nonces up to `nonce` are used on chain: by our transactions, which are final."""
        for used in [known for known in self.unconfirmed if known <= nonce]:
            del self.unconfirmed[used]

    def _confirm(self, tx_id: bytes) -> None:
        """`tx_id` is committed (or refused by execution: committed all the same)."""
        for nonce, tx in self.unconfirmed.items():
            if tx.tx_id == tx_id:
                self._confirm_through(nonce)
                return

    async def _send_again(self, txs: list[Transaction]) -> None:
        """Re-send unconfirmed transactions, in nonce order; SubmissionRefusedError if the node
        refuses one for another reason than already having it (they stay unconfirmed)."""
        for verdict in await self._post_txs(txs):
            if not verdict.accepted and verdict.code not in STILL_ALIVE_CODES:
                raise SubmissionRefusedError(
                    f"the node refused to take back transaction {verdict.tx_id.hex()}: "
                    f"{verdict.code}: {verdict.reason}"
                )

    async def _post_txs(self, txs: list[Transaction], path: str = "/txs") -> list[Any]:
        """POST `txs` (chunks of MAX_BATCH_TXS); each chunk's `results`, parsed as verdicts
        (or, with wait=commit, the raw results too: see `submit_and_commit`)."""
        verdicts: list[Any] = []
        for start in range(0, len(txs), MAX_BATCH_TXS):
            chunk = txs[start : start + MAX_BATCH_TXS]
            body = json.dumps({"txs": [tx.encode().hex() for tx in chunk]}).encode()
            reply = await self._request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            verdicts += parse_verdicts(reply, [tx.tx_id for tx in chunk])
        return verdicts

    async def submit(self, tx: Transaction) -> Verdict:
        return (await self.submit_batch([tx]))[0]

    async def submit_batch(self, txs: list[Transaction]) -> list[Verdict]:
        """Submit in order (chunks of MAX_BATCH_TXS); one mempool verdict per transaction.

        Each is unconfirmed from the moment it is sent: a reply that never comes may hide an
        admission. One the node refused leaves no trace (this client sends each transaction
        to one node), so its nonce is free again."""
        async with self._tracking(txs):
            verdicts: list[Verdict] = await self._post_txs(txs)
        for tx, verdict in zip(txs, verdicts, strict=True):
            if not verdict.accepted and verdict.code != "duplicate":
                self._free(tx)
        if not all(verdict.accepted for verdict in verdicts):
            self.forget_nonce()
        return verdicts

    @contextlib.asynccontextmanager
    async def _tracking(self, txs: list[Transaction]) -> AsyncIterator[None]:
        """Hold `txs` as unconfirmed while they are sent; a refusal of the whole request
        (4xx: nothing was admitted) frees them, no reply or a 5xx keeps them."""
        own = [tx for tx in txs if tx.sender == self.identity.member_key]
        for tx in own:
            self.unconfirmed[tx.nonce] = tx
        try:
            yield
        except RequestFailedError as error:
            if error.status < 500 or error.code in NOT_ADMITTED_CODES:
                for tx in own:
                    self.unconfirmed.pop(tx.nonce, None)
            self.forget_nonce()
            raise
        except EmrClientError:
            self.forget_nonce()
            raise

    async def submit_and_commit(self, tx: Transaction) -> Committed:
        """Submit with `POST /txs?wait=commit`: the node answers once `tx` is committed.
        SubmissionRefusedError (refused, or dropped: its nonce went to another transaction),
        TransactionRefusedError (committed, refused by execution), CommitTimeoutError (not
        committed within the node's `[rpc] commit_wait_timeout_ms`: it may still commit)."""
        try:
            async with self._tracking([tx]):
                verdict, outcome = await self._post_and_wait(tx)
        except TimedOut as error:
            if error.code != "commit_timeout":
                raise
            raise CommitTimeoutError(f"transaction {tx.tx_id.hex()}: {error.message}") from None
        if not verdict.accepted or outcome["outcome"] == "dropped":
            if verdict.code != "duplicate":
                self._free(tx)
            self.forget_nonce()
            why = f"{verdict.code}: {verdict.reason}" if not verdict.accepted else "dropped"
            raise SubmissionRefusedError(f"the node refused transaction {tx.tx_id.hex()}: {why}")
        self._confirm(tx.tx_id)
        height = integer_field(outcome, "height", "POST /txs?wait=commit")
        code = integer_field(outcome, "result_code", "POST /txs?wait=commit")
        if code != 0:  # the result message is the sender's to read: a signed GET /txs/{id}
            return await self.wait_committed(tx.tx_id)
        return Committed(tx.tx_id, height, code)

    def _free(self, tx: Transaction) -> None:
        """`tx` was refused at admission: it is in no mempool, its nonce is free again."""
        if self.unconfirmed.get(tx.nonce) == tx:
            del self.unconfirmed[tx.nonce]

    async def _post_and_wait(self, tx: Transaction) -> tuple[Verdict, dict[str, Any]]:
        body = json.dumps({"txs": [tx.encode().hex()]}).encode()
        reply = await self._request(
            "POST", "/txs?wait=commit", body=body, headers={"Content-Type": "application/json"}
        )
        verdict = parse_verdicts(reply, [tx.tx_id])[0]
        return verdict, json_object(reply["results"][0], "POST /txs?wait=commit")

    async def wait_committed(
        self, tx_id: bytes, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S
    ) -> Committed:
        """Poll `GET /txs/{id}` until committed; TransactionRefusedError if execution refused it,
        CommitTimeoutError if it is not committed within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        interval = _POLL_INITIAL_S
        last_status = "unknown to the node"
        # Signed, so that a refusal comes with its message (the node shows it only to the
        # sender's member); a key the node no longer knows (revoked) polls unsigned.
        signed = True
        while True:
            try:
                reply = await self._request("GET", f"/txs/{tx_id.hex()}", signed=signed)
            except NotFound:  # not (yet) known here: gossip may not have brought it
                reply = None
            except Unauthenticated:
                if not signed:
                    raise
                signed, reply = False, None
                continue
            if reply is not None:
                last_status = text_field(reply, "status", "GET /txs")
                if last_status == "committed":
                    self._confirm(tx_id)
                    try:
                        return parse_committed(reply, tx_id)
                    except EmrClientError:
                        self.forget_nonce()
                        raise
            if time.monotonic() >= deadline:
                raise CommitTimeoutError(
                    f"transaction {tx_id.hex()} not committed after {timeout_s:g} s "
                    f"(last status: {last_status})"
                )
            await asyncio.sleep(interval)
            interval = min(interval * 2, _POLL_MAXIMUM_S)

    async def submit_and_wait(
        self, tx: Transaction, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S
    ) -> Committed:
        """Submit one transaction and wait for its commit; raise on any refusal. The node
        answers at the commit (wait=commit); past its own wait, this polls until `timeout_s`."""
        started = time.monotonic()
        try:
            return await self.submit_and_commit(tx)
        except CommitTimeoutError:
            remaining_s = timeout_s - (time.monotonic() - started)
            if remaining_s <= 0:
                raise
        return await self.wait_committed(tx.tx_id, remaining_s)

    async def _send(self, build: Any, **fields: Any) -> Committed:
        """Build a transaction with this identity and the next nonce, submit it and wait."""
        tx = build(self.identity, await self.chain_id(), await self.next_nonce(), **fields)
        return await self.submit_and_wait(tx)

    # ------------------------------------------------------------------ records

    async def put_record(
        self,
        plaintext: bytes,
        patient_id: bytes,
        record_type: RecordType,
        *,
        amendment: dict[str, Any] | None = None,
    ) -> StoredRecord:
        """Seal the record for its custody set and its patient, anchor it with the digest of
        every wrap, wait for the commit, then hand each custodian its wrap (with the ciphertext
        and the patient's wrap) at that custodian's own node (`docs/spec/records.md` §9).

        The custody set comes from the node (`GET /custody-set`); the chain refuses the anchor
        unless it is the policy's. A custodian whose node is unknown or refuses is named in
        `StoredRecord.custody_failures` (hand it its wrap again with `hand_custody`); the put
        fails only when no custodian kept the record."""
        record_id = new_record_id()
        plan = parse_custody_plan(
            await self._request(
                "GET",
                f"/custody-set?record_id={record_id.hex()}&patient_id={patient_id.hex()}",
                signed=True,
            ),
            record_id,
            patient_id,
        )
        recipients = {PATIENT_RECIPIENT: plan.patient_encryption_key}
        for custodian in plan.custodians:
            recipients[custodian.organization_id] = custodian.custody_key
        sealed = seal_record(
            plaintext,
            record_id,
            patient_id,
            recipients,
            max_plaintext_bytes=self._max_plaintext_bytes,
        )
        tx = transactions.anchor_record(
            self.identity,
            await self.chain_id(),
            await self.next_nonce(),
            sealed=sealed,
            record_type=record_type,
            custodians=[custodian.organization_id for custodian in plan.custodians],
            amendment=amendment,
        )
        committed = await self.submit_and_wait(tx)
        stored: list[str] = []
        failures: dict[str, str] = {}
        for custodian in plan.custodians:
            try:
                await self.hand_custody(sealed, custodian.organization_id, custodian.node_address)
                stored.append(custodian.organization_id)
            except EmrClientError as error:
                failures[custodian.organization_id] = str(error)
        if not stored:
            raise CustodyFailedError(
                f"record {record_id.hex()} is anchored but no custodian kept it: {failures}"
            )
        return StoredRecord(
            record_id=sealed.record_id,
            patient_id=patient_id,
            anchor_tx_id=committed.tx_id,
            cid_text=sealed.cid_text,
            size_bytes=sealed.size,
            height=committed.height,
            custodians=tuple(stored),
            custody_failures=failures,
        )

    async def amend_record(
        self,
        plaintext: bytes,
        patient_id: bytes,
        record_type: RecordType,
        supersedes: bytes,
        reason: AmendmentReason,
        note: str = "",
    ) -> StoredRecord:
        """Store a new record of the same patient that supersedes `supersedes` (records.md
        §11): sealed and handed to its custodians as by `put_record`, anchored by AMEND_RECORD
        with the link, its reason and a short note (at most 256 bytes)."""
        amendment = {"supersedes": supersedes, "reason": reason, "note": note}
        return await self.put_record(plaintext, patient_id, record_type, amendment=amendment)

    async def record_history(self, record_id: bytes) -> dict[str, Any]:
        """`GET /records/{id}/history`: the record's status, what it supersedes (back to the
        original) and what amends it. Listed for the patient, auditors and admins of the
        author organisation."""
        path = f"/records/{record_id.hex()}/history"
        reply = json_object(await self._request("GET", path, signed=True), f"GET {path}")
        for name in ("supersedes", "superseded_by"):
            if not isinstance(reply.get(name), list):
                raise BadReplyError(f"GET {path}: {name} is missing or not a list")
        return reply

    async def reviews(
        self, status: str | None = None, after: int | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """`GET /reviews` (auditors): break-glass and re-enrolment reviews, oldest first,
        `{"reviews": [...], "next_after": n|null, "total": n, "open": n}`."""
        query = [f"limit={limit}"]
        if status is not None:
            query.append(f"status={status}")
        if after is not None:
            query.append(f"after={after}")
        path = "/reviews?" + "&".join(query)
        reply = json_object(await self._request("GET", path, signed=True), "GET /reviews")
        if not isinstance(reply.get("reviews"), list):
            raise BadReplyError("GET /reviews: reviews is missing or not a list")
        return reply

    async def review(self, review_id: bytes) -> dict[str, Any]:
        """`GET /reviews/{id}` (auditors)."""
        path = f"/reviews/{review_id.hex()}"
        return json_object(await self._request("GET", path, signed=True), f"GET {path}")

    async def close_review(
        self, review_id: bytes, outcome: ReviewOutcome, note: str = ""
    ) -> Committed:
        """Close an open review with an outcome (an auditor's CLOSE_REVIEW)."""
        return await self._send(
            transactions.close_review, review_id=review_id, outcome=outcome, note=note
        )

    # ------------------------------------------------------------------ studies

    async def propose_study(self, **fields: Any) -> Committed:
        """PROPOSE_STUDY (`transactions.propose_study`'s fields); this member is the sponsor."""
        return await self._send(transactions.propose_study, **fields)

    async def approve_study(self, study_id: bytes) -> Committed:
        """An admin of a participating organisation approves the study."""
        return await self._send(transactions.approve_study, study_id=study_id)

    async def submit_study_query(self, **fields: Any) -> Committed:
        """STUDY_QUERY, waited for until committed (TransactionRefusedError with the chain's
        code, e.g. PRIVACY_BUDGET_EXCEEDED, when execution refuses it)."""
        return await self._send(transactions.study_query, **fields)

    async def anchor_study_result(
        self, study_id: bytes, query_id: bytes, result_sha256: bytes
    ) -> Committed:
        return await self._send(
            transactions.study_result,
            study_id=study_id,
            query_id=query_id,
            result_sha256=result_sha256,
        )

    async def close_study(self, study_id: bytes) -> Committed:
        return await self._send(transactions.close_study, study_id=study_id)

    async def research_consent(self, opt_in: bool) -> Committed:
        """The patient's research consent (RESEARCH_CONSENT)."""
        return await self._send(transactions.research_consent, opt_in=opt_in)

    async def studies(self, after: int | None = None, limit: int = 100) -> dict[str, Any]:
        """`GET /studies`: `{"studies": [...], "next_after": n|null}`."""
        path = f"/studies?limit={limit}" + ("" if after is None else f"&after={after}")
        reply = json_object(await self._request("GET", path, signed=True), "GET /studies")
        if not isinstance(reply.get("studies"), list):
            raise BadReplyError("GET /studies: studies is missing or not a list")
        return reply

    async def study(self, study_id: bytes) -> dict[str, Any]:
        """`GET /studies/{id}`: terms, approvals, budget spent and left, queries, results."""
        path = f"/studies/{study_id.hex()}"
        return json_object(await self._request("GET", path, signed=True), f"GET {path}")

    async def study_contribution(self, study_id: bytes, query_id: bytes) -> dict[str, Any]:
        """This node's organisation's contribution to a query (the sponsor only); NotFound
        until it is computed."""
        path = f"/studies/{study_id.hex()}/queries/{query_id.hex()}/contribution"
        reply = json_object(await self._request("GET", path, signed=True), f"GET {path}")
        vector = reply.get("vector")
        if not isinstance(vector, list) or not all(isinstance(item, str) for item in vector):
            raise BadReplyError(f"GET {path}: vector is missing or not a list of strings")
        return reply

    async def hand_custody(
        self, sealed: SealedRecord, organization_id: str, node_address: str | None
    ) -> None:
        """Give one custodian its wrap of an anchored record, at its own node."""
        if node_address is None:
            raise NodeUnreachableError(f"no node address is known for {organization_id}")
        query = (
            f"custody_wrap={sealed.wraps[organization_id].hex()}"
            f"&patient_wrap={sealed.wraps[PATIENT_RECIPIENT].hex()}"
        )
        path = f"/records/{sealed.record_id.hex()}/custody?{query}"
        headers = {"Content-Type": "application/octet-stream"}
        async with self._at(node_address) as client:
            reply = await client._request(
                "PUT", path, body=sealed.ciphertext, signed=True, headers=headers
            )
        check_stored(reply, sealed)

    def _at(self, node_address: str) -> _Borrowed:
        """This client, or one for the same member at another node (closed after use)."""
        if check_base_url(node_address) == self.base_url:
            return _Borrowed(self, close=False)
        other = EmrClient(
            node_address,
            self.identity,
            self._chain_id,
            timeout_s=self._timeout.total or DEFAULT_TIMEOUT_S,
            max_plaintext_bytes=self._max_plaintext_bytes,
            tls=self._tls,
        )
        return _Borrowed(other, close=True)

    async def custody(self, record_id: bytes) -> dict[str, Any]:
        """`GET /records/{id}/custody`: custodians, node addresses, wrap digests, receipts."""
        reply = await self._request("GET", f"/records/{record_id.hex()}/custody", signed=True)
        if not isinstance(reply, dict) or not isinstance(reply.get("custodians"), list):
            raise BadReplyError("GET /records/{id}/custody: no custodian list")
        return reply

    async def _read(self, record_id: bytes) -> tuple[RecordRead, bytes]:
        """GET the record with a signed ACCESS_EVENT; (the plaintext read, our wrapped key).
        The node answers only once the event is committed: the read is on chain."""
        event = transactions.access_event(
            self.identity, await self.chain_id(), await self.next_nonce(), record_id=record_id
        )
        # Refused before or after the node admitted our access event: the nonce is worked
        # out again, the event kept as unconfirmed unless the node answered (4xx).
        async with self._tracking([event]):
            reply = await self._request(
                "GET",
                f"/records/{record_id.hex()}",
                signed=True,
                headers={HEADER_ACCESS_EVENT: event.encode().hex()},
                limit=self._max_record_reply_bytes,
            )
        served = parse_served_record(reply, event.tx_id)
        self._confirm(event.tx_id)  # served implies committed
        try:
            plaintext = open_record(
                served.ciphertext,
                served.wrapped_key,
                self.identity.encryption_private_key,
                record_id,
                served.patient_id,
                max_plaintext_bytes=self._max_plaintext_bytes,
            )
        except EnvelopeError as error:
            raise BadReplyError(f"GET /records/{{id}}: the record does not open: {error}") from None
        read = RecordRead(
            record_id,
            served.patient_id,
            plaintext,
            event.tx_id,
            served.access_event_height,
            served.status,
            served.superseded_by,
        )
        return read, served.wrapped_key

    async def get_record(self, record_id: bytes) -> RecordRead:
        """Read and decrypt a record. The node admits our ACCESS_EVENT and answers only once
        it is committed, so a read we get is a read on the ledger.

        A node that cannot serve it (unreachable, not a custodian, its storage down) is not
        the end: the client asks the record's custodians' nodes, in custody order, one after
        another (`docs/spec/records.md` §9). Refusals of access are final."""
        try:
            read, _ = await self._read(record_id)
            return read
        except (NodeUnreachableError, Unavailable, Conflict) as first_error:
            if isinstance(first_error, Conflict) and first_error.code != "not_custodian":
                raise
            return await self._read_elsewhere(record_id, first_error)

    async def _read_elsewhere(self, record_id: bytes, first_error: EmrClientError) -> RecordRead:
        """The read at the other custodians' nodes; with none to try, the first node's error
        as it was (a record with one custodian fails as before)."""
        try:
            addresses = await self._custodian_addresses(record_id)
        except EmrClientError:
            raise first_error from None
        others = [address for address in addresses if check_base_url(address) != self.base_url]
        if not others:
            raise first_error
        failures = [f"{self.base_url}: {first_error}"]
        for address in others:
            async with self._at(address) as client:
                try:
                    read, _ = await client._read(record_id)
                    return read
                except (NodeUnreachableError, Unavailable, Conflict) as error:
                    failures.append(f"{address}: {error}")
        raise NodeUnreachableError(
            f"no custodian's node served record {record_id.hex()[:16]}: " + "; ".join(failures)
        )

    async def _custodian_addresses(self, record_id: bytes) -> list[str]:
        """The custodians' node addresses, asked of this node, else of any known custodian
        node a previous answer named."""
        reply: dict[str, Any] | None = None
        for address in [self.base_url, *self.fallback_addresses]:
            async with self._at(address) as client:
                try:
                    reply = await client.custody(record_id)
                    break
                except (NodeUnreachableError, Unavailable) as error:
                    last_error = error
        if reply is None:
            raise last_error
        return [
            item["node_address"]
            for item in reply["custodians"]
            if isinstance(item, dict) and isinstance(item.get("node_address"), str)
        ]

    async def grant(
        self,
        *,
        record_id: bytes | None = None,
        patient_id: bytes | None = None,
        grantee_member: bytes | None = None,
        grantee_organization: str | None = None,
        grantee_encryption_key: bytes | None = None,
        expires_at_ms: int = 0,
    ) -> Committed:
        """Grant access to one record (the data key is re-wrapped for the grantee: we read the
        record first to obtain our own wrap) or to all of a patient's records. The grant id is
        the returned transaction id. A record grant to a member looks its encryption key up;
        to an organisation, give `grantee_encryption_key` (the API has no organisation route)."""
        if (record_id is None) == (patient_id is None):
            raise ValueError("grant on exactly one of a record id and a patient id")
        grantee = {"grantee_member": grantee_member, "grantee_organization": grantee_organization}
        if patient_id is not None:
            return await self._send(
                transactions.grant_patient,
                patient_id=patient_id,
                expires_at_ms=expires_at_ms,
                **grantee,
            )
        assert record_id is not None
        if grantee_encryption_key is None:
            if grantee_member is None:
                raise ValueError("a record grant to an organisation needs its encryption key")
            member = (await self.account(grantee_member)).get("member")
            if member is None:
                raise EmrClientError(f"grantee {grantee_member.hex()} is not a member")
            grantee_encryption_key = hex_field(member, "encryption_key", "GET /accounts", 32)
        _, own_wrapped_key = await self._read(record_id)
        wrap = transactions.grantee_wrap(self.identity, own_wrapped_key, grantee_encryption_key)
        committed = await self._send(
            transactions.grant_record,
            record_id=record_id,
            grantee_wrap=wrap,
            expires_at_ms=expires_at_ms,
            **grantee,
        )
        await self.hand_grantee_wrap(record_id, committed.tx_id, wrap)
        return committed

    async def hand_grantee_wrap(self, record_id: bytes, grant_id: bytes, wrap: bytes) -> None:
        """Give every custodian of the record the grantee's wrap whose digest the grant holds
        (`docs/spec/records.md` §9); raises if none kept it."""
        custody = await self.custody(record_id)
        failures = []
        kept = 0
        for item in custody["custodians"]:
            address = item.get("node_address") if isinstance(item, dict) else None
            if not isinstance(address, str):
                failures.append(f"{item}: no node address")
                continue
            path = f"/records/{record_id.hex()}/grant-wraps/{grant_id.hex()}?wrap={wrap.hex()}"
            async with self._at(address) as client:
                try:
                    await client._request("PUT", path, signed=True)
                    kept += 1
                except EmrClientError as error:
                    failures.append(f"{address}: {error}")
        if not kept:
            raise CustodyFailedError(f"no custodian kept the grantee's wrap: {failures}")

    async def revoke(self, grant_id: bytes) -> Committed:
        return await self._send(transactions.revoke_access, grant_id=grant_id)

    async def break_glass(
        self, patient_id: bytes, reason: str, duration_ms: int, record_id: bytes | None = None
    ) -> Committed:
        return await self._send(
            transactions.break_glass,
            patient_id=patient_id,
            reason=reason,
            duration_ms=duration_ms,
            record_id=record_id or transactions.NO_KEY,
        )

    async def erase(self, record_id: bytes, reason: ErasureReason) -> Committed:
        return await self._send(transactions.erase_record, record_id=record_id, reason=reason)

    async def replication(self) -> dict[str, Any]:
        """`GET /records/replication`, signed: the node's view of record replication
        (docs/spec/records.md §10), for admins of its organisation and auditors."""
        reply = await self._request("GET", "/records/replication", signed=True)
        return json_object(reply, "GET /records/replication")

    async def grants(
        self, *, patient_id: bytes | None = None, record_id: bytes | None = None
    ) -> dict[str, Any]:
        """The grants in state for a patient or a record: `{"grants": [...]}`. Listed for the
        patient, auditors, and admins of the author organisation."""
        path = _listing_path(patient_id, record_id, "grants")
        reply = json_object(await self._request("GET", path, signed=True), f"GET {path}")
        if not isinstance(reply.get("grants"), list):
            raise BadReplyError(f"GET {path}: grants is missing or not a list")
        return reply

    async def access_events(
        self,
        *,
        patient_id: bytes | None = None,
        record_id: bytes | None = None,
        limit: int = DEFAULT_TRAIL_LIMIT,
        before: str | None = None,
    ) -> dict[str, Any]:
        """One page of the access trail of a patient or a record, newest first: the newest
        `limit` (1..1000, at most the node's `[rpc] page_limit_max`) events, or those just
        before the cursor `before` (a previous page's `next`). `{"events": [...], "total": n,
        "dropped": 0, "next": cursor or None}`; `next` is None once the first event is in."""
        path = _listing_path(patient_id, record_id, "access-events")
        return await self._page(path, "events", limit, before=before)

    async def all_access_events(
        self,
        *,
        patient_id: bytes | None = None,
        record_id: bytes | None = None,
        page_limit: int = MAX_TRAIL_LIMIT,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of the trail, newest first back to the first ever, page by page."""

        async def page_before(cursor: str | None) -> dict[str, Any]:
            return await self.access_events(
                patient_id=patient_id, record_id=record_id, limit=page_limit, before=cursor
            )

        async for event in _every_item(page_before, "events"):
            yield event

    async def patient_records(
        self, patient_id: bytes, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        """One page of a patient's records, oldest first, after the cursor `after`:
        `{"patient_id": hex, "records": [...], "next": cursor or None}`. Each record is its
        anchor (id, author and organisation, height and time, type, content hash, CID, erased
        or not), never its content. Listed for the patient, auditors, admins (their
        organisation's records only: a page may then hold fewer than `limit` and still have a
        `next`) and clinicians the patient let read all its records."""
        path = f"/patients/{patient_id.hex()}/records"
        return await self._page(path, "records", limit, after=after)

    async def all_patient_records(
        self, patient_id: bytes, *, page_limit: int = MAX_TRAIL_LIMIT
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of the patient the caller may list, oldest first, page by page."""

        async def page_after(cursor: str | None) -> dict[str, Any]:
            return await self.patient_records(patient_id, after=cursor, limit=page_limit)

        async for record in _every_item(page_after, "records"):
            yield record

    async def patient_consents(
        self, patient_id: bytes, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        """One page of a patient's consent history, oldest first, after the cursor `after`:
        every grant ever made naming the patient, with `status` "active", "revoked" or
        "expired" and, once revoked, `revoked_height` and `revoked_time_ms`. Listed for the
        patient and auditors."""
        path = f"/patients/{patient_id.hex()}/consents"
        return await self._page(path, "consents", limit, after=after)

    async def all_patient_consents(
        self, patient_id: bytes, *, page_limit: int = MAX_TRAIL_LIMIT
    ) -> AsyncIterator[dict[str, Any]]:
        """The patient's whole consent history, oldest first, page by page."""

        async def page_after(cursor: str | None) -> dict[str, Any]:
            return await self.patient_consents(patient_id, after=cursor, limit=page_limit)

        async for consent in _every_item(page_after, "consents"):
            yield consent

    async def shared_with_me(
        self, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        """One page of the grants in force naming this client's member, or (for a clinician)
        its organisation, after the cursor `after`: `{"member_key", "shared": [{"grant_id",
        "scope", "record_id" (null for patient scope), "patient_id", "grantee_kind",
        "expires_time_ms", "granted_height"}], "next"}`."""
        path = f"/members/{self.identity.member_key.hex()}/shared"
        return await self._page(path, "shared", limit, after=after)

    async def all_shared_with_me(
        self, *, page_limit: int = MAX_TRAIL_LIMIT
    ) -> AsyncIterator[dict[str, Any]]:
        """Every grant in force shared with this client's member, page by page."""

        async def page_after(cursor: str | None) -> dict[str, Any]:
            return await self.shared_with_me(after=cursor, limit=page_limit)

        async for grant in _every_item(page_after, "shared"):
            yield grant

    async def _page(
        self,
        path: str,
        items: str,
        limit: int,
        *,
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= MAX_TRAIL_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_TRAIL_LIMIT}")
        query = {"limit": str(limit)}
        for name, value in (("after", after), ("before", before)):
            if value is not None:
                query[name] = value
        path = str(yarl.URL(path).with_query(query))
        reply = json_object(await self._request("GET", path, signed=True), f"GET {path}")
        if not isinstance(reply.get(items), list):
            raise BadReplyError(f"GET {path}: {items} is missing or not a list")
        if not isinstance(reply.get("next"), str | None):
            raise BadReplyError(f"GET {path}: next is not a cursor")
        return reply

    # ------------------------------------------------------------------------ FHIR

    async def fhir_read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """`GET /fhir/<type>/<id>`, signed: one resource (`docs/spec/fhir.md`)."""
        path = f"/fhir/{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"
        return _fhir_resource(await self._request("GET", path, signed=True), path, resource_type)

    async def fhir_search(self, resource_type: str, **parameters: str) -> dict[str, Any]:
        """`GET /fhir/<type>?...`, signed: a searchset Bundle. Parameters by name (`patient`,
        `_id`, `date`, `status`, `_lastUpdated`, `_count`, ...), as FHIR spells them."""
        query = urlencode(sorted(parameters.items()), quote_via=quote, safe="")
        path = f"/fhir/{quote(resource_type, safe='')}" + (f"?{query}" if query else "")
        return _fhir_resource(await self._request("GET", path, signed=True), path, "Bundle")

    async def fhir_metadata(self) -> dict[str, Any]:
        """`GET /fhir/metadata`: the CapabilityStatement (unsigned)."""
        reply = await self._request("GET", "/fhir/metadata")
        return _fhir_resource(reply, "/fhir/metadata", "CapabilityStatement")

    async def store_fhir_resource(
        self,
        resource: dict[str, Any],
        patient_id: bytes,
        record_type: RecordType | None = None,
    ) -> StoredRecord:
        """Store a FHIR resource as a record's plaintext (its canonical JSON), sealed and
        anchored as `put_record` does; the record type defaults to the resource's category
        (`emrchain.client.fhir_content.RECORD_TYPES`)."""
        plaintext = encode_resource(resource)
        chosen = record_type if record_type is not None else record_type_of(resource)
        return await self.put_record(plaintext, patient_id, chosen)

    async def read_fhir_resource(self, record_id: bytes) -> dict[str, Any]:
        """Read a record (an audited read, as `get_record`) and return the FHIR resource its
        plaintext holds; NotFhirError when it holds something else."""
        read = await self.get_record(record_id)
        resource = fhir_resource_of(read.plaintext)
        if resource is None:
            raise NotFhirError(f"record {record_id.hex()[:16]} does not hold a FHIR resource")
        return resource

    async def read_attachment(self, document_reference: dict[str, Any]) -> dict[str, Any]:
        """The FHIR resource behind a DocumentReference the node's /fhir served: its
        attachment names the read route of the record, which this client reads (recording the
        access event) and decrypts."""
        record_id = attachment_record_id(document_reference)
        return await self.read_fhir_resource(record_id)

    async def export_patient(self, patient_id: bytes, out_dir: Path) -> ExportSummary:
        """Every record of the patient decrypted into `out_dir`, with `bundle.json`
        (`emrchain.client.export.export_patient`)."""
        return await export_patient(self, patient_id, out_dir)


def attachment_record_id(document_reference: dict[str, Any]) -> bytes:
    """The record id a DocumentReference's attachment url names (`.../records/<id>`)."""
    try:
        url = document_reference["content"][0]["attachment"]["url"]
        record_hex = str(url).rstrip("/").rsplit("/records/", 1)[1]
        record_id = bytes.fromhex(record_hex)
    except (KeyError, IndexError, TypeError, ValueError):
        raise BadReplyError("the DocumentReference has no record attachment url") from None
    if len(record_id) != 32 or record_hex != record_id.hex():
        raise BadReplyError("the DocumentReference's attachment url names no record id")
    return record_id


def _fhir_resource(reply: Any, path: str, resource_type: str) -> dict[str, Any]:
    resource = json_object(reply, f"GET {path.split('?')[0]}")
    if resource.get("resourceType") != resource_type:
        raise BadReplyError(f"GET {path.split('?')[0]}: not a {resource_type}")
    return resource


class _Borrowed:
    """`async with`: a client to use, closed afterwards only if it was made for this use."""

    def __init__(self, client: EmrClient, *, close: bool) -> None:
        self._client = client
        self._close = close

    async def __aenter__(self) -> EmrClient:
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        if self._close:
            await self._client.close()


def check_base_url(base_url: str) -> str:
    """`http(s)://host[:port]` without path: signed paths are the node's own paths."""
    try:
        url = yarl.URL(base_url)
    except (TypeError, ValueError):
        raise ValueError(f"not a URL: {base_url!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"the RPC URL must be http(s)://host[:port], got {base_url!r}")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError(f"the RPC URL must have no path, query or fragment, got {base_url!r}")
    return str(url.origin())


def _next_cursor(page: dict[str, Any]) -> str | None:
    cursor = page.get("next")
    return cursor if isinstance(cursor, str) else None


async def _every_item(
    fetch_page: Callable[[str | None], Awaitable[dict[str, Any]]], items_key: str
) -> AsyncIterator[dict[str, Any]]:
    """Every item of a paged listing: `fetch_page(cursor)` from the first page (None) on,
    following the node's `next` cursor until a page has none."""
    cursor: str | None = None
    while True:
        page = await fetch_page(cursor)
        for item in page[items_key]:
            yield item
        cursor = _next_cursor(page)
        if cursor is None:
            return


def _listing_path(patient_id: bytes | None, record_id: bytes | None, listing: str) -> str:
    if (patient_id is None) == (record_id is None):
        raise ValueError("give exactly one of a patient id and a record id")
    if patient_id is not None:
        return f"/patients/{patient_id.hex()}/{listing}"
    assert record_id is not None
    return f"/records/{record_id.hex()}/{listing}"
