"""`BlobStore` on an IPFS node's HTTP RPC API (`/api/v0`, Kubo's; the tests run Kubo itself).

The node is untrusted for integrity: every CID it returns from `add` must equal the CID we
compute for the bytes we sent, and every byte it returns from `cat` is checked against the
SHA-256 anchored on chain before anyone sees it. The node is also unreliable: every request has
a client-side timeout, lookups carry the node's own `timeout=` (a node asked for a CID it does
not have otherwise searches forever), and connection failures are retried a bounded number of
times with exponential backoff before `StorageUnavailableError`.

What "deleted" means here: `delete` unpins the CID and (by default) runs the node's garbage
collector, after which this node no longer holds or serves the blocks. It cannot reach copies
other IPFS nodes fetched or pinned, nor bytes left on disk by the filesystem after unlinking.
Erasure of a record therefore rests on crypto-shredding (destroying its wrapped data key);
removing the ciphertext is hygiene. See docs/adr/0001-ipfs-client.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from emrchain import metrics
from emrchain.storage.cid import CHUNK_SIZE, ContentId, block_cids, compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageUnavailableError,
)

logger = logging.getLogger(__name__)

SHA256_LENGTH = 32
_READ_CHUNK_BYTES = 65_536
_ERROR_BODY_LIMIT_BYTES = 65_536
# What Kubo says when its `timeout=` expires (an online node searched and found nothing), and
# what an offline node (or an `offline=true` lookup) says at once for a CID it does not hold.
_NOT_HELD_MESSAGES = ("request timed out", "not found locally", "ipld: could not find")
_NOT_PINNED_MESSAGE = "not pinned"


class _NodeLookupTimeoutError(Exception):
    """The node does not have the CID and could not fetch it: its own `timeout=` expired, or
    it is offline and said so."""


class _NodeRejectedError(Exception):
    """The node answered with an error that retrying will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _RetryableError(Exception):
    """A failure that may go away: connection refused/reset, client timeout, 5xx.

    Its message may reach RPC clients (through StorageUnavailableError, a 503), so it never
    names the IPFS API's address; `detail` does, for the node's log."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    params: Mapping[str, str]
    timeout_s: float
    retryable: bool = True


class IpfsBlobStore:
    """Ciphertext blobs on one IPFS node, pinned there, addressed by CIDv1 raw-leaves base32.

    Worst-case time of one call: `(retries + 1) * timeout_ms` plus the backoff sleeps (each at
    most `backoff_max_ms`); a refused connection fails in milliseconds per attempt.
    """

    def __init__(
        self,
        api_url: str,
        timeout_ms: int = 10_000,
        retries: int = 2,
        *,
        node_lookup_timeout_ms: int = 2_000,
        has_timeout_ms: int = 500,
        backoff_base_ms: int = 50,
        backoff_max_ms: int = 1_000,
        max_blob_bytes: int = 64 * 1024 * 1024,
        collect_garbage_on_delete: bool = True,
        garbage_collection_timeout_ms: int = 120_000,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError("api_url must be an http:// or https:// URL")
        if timeout_ms <= 0 or node_lookup_timeout_ms <= 0 or has_timeout_ms <= 0:
            raise ValueError("timeouts must be positive")
        if node_lookup_timeout_ms >= timeout_ms:
            # The node must give up first, so "absent" (node timeout) is told apart from
            # "node too slow" (client timeout).
            raise ValueError("node_lookup_timeout_ms must be below timeout_ms")
        if retries < 0 or backoff_base_ms < 0 or backoff_max_ms < backoff_base_ms:
            raise ValueError("retries >= 0 and 0 <= backoff_base_ms <= backoff_max_ms")
        if max_blob_bytes <= 0:
            raise ValueError("max_blob_bytes must be positive")
        self._api_url = api_url.rstrip("/") + "/api/v0"
        self._timeout_s = timeout_ms / 1000
        self._retries = retries
        self._node_lookup_timeout = f"{node_lookup_timeout_ms}ms"
        self._has_timeout = f"{has_timeout_ms}ms"
        self._backoff_base_s = backoff_base_ms / 1000
        self._backoff_max_s = backoff_max_ms / 1000
        self._max_blob_bytes = max_blob_bytes
        self._collect_garbage_on_delete = collect_garbage_on_delete
        self._garbage_collection_timeout_s = garbage_collection_timeout_ms / 1000
        self._session: aiohttp.ClientSession | None = None
        # Garbage collection is slow (seconds) and global, so concurrent deletes share runs:
        # a delete is covered by any run that started after its unpin.
        self._garbage_collection_lock = asyncio.Lock()
        self._unpin_count = 0
        self._unpins_covered_by_collection = 0

    # -- BlobStore -------------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        """Add `data` (pinned) and return its CID, after checking the node computed the same."""
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        if len(data) > self._max_blob_bytes:
            raise ValueError(f"blob of {len(data)} bytes exceeds {self._max_blob_bytes} bytes")
        expected_cid = compute_cid(data).to_text()
        params = {
            "cid-version": "1",
            "raw-leaves": "true",
            "cid-base": "base32",
            "hash": "sha2-256",
            "chunker": f"size-{CHUNK_SIZE}",
            "pin": "true",
            "progress": "false",
        }
        body = await self._call(_Request("add", params, self._timeout_s), data=data)
        node_cid = _last_json_line(body).get("Hash")
        if node_cid != expected_cid:
            raise BlobCorruptedError(
                f"IPFS node returned CID {node_cid!r} for bytes whose CID is {expected_cid}"
            )
        return expected_cid

    async def get(self, cid: str, expected_sha256: bytes) -> bytes:
        """The bytes of `cid`, returned only if their SHA-256 equals `expected_sha256`."""
        _parse_cid(cid)
        if not isinstance(expected_sha256, bytes) or len(expected_sha256) != SHA256_LENGTH:
            raise ValueError("expected_sha256 must be 32 bytes")
        params = {"arg": cid, "timeout": self._node_lookup_timeout}
        try:
            data = await self._call(
                _Request("cat", params, self._timeout_s), limit_bytes=self._max_blob_bytes
            )
        except _NodeLookupTimeoutError:
            raise BlobNotFoundError(f"IPFS node does not have {cid}") from None
        if not hmac.compare_digest(hashlib.sha256(data).digest(), expected_sha256):
            raise BlobCorruptedError(
                f"IPFS node returned {len(data)} bytes for {cid} whose SHA-256 differs from "
                "the anchor"
            )
        return data

    async def pin(self, cid: str) -> None:
        """Pin `cid`; BlobNotFoundError if the node cannot find it within its lookup timeout."""
        _parse_cid(cid)
        params = {"arg": cid, "recursive": "true", "timeout": self._node_lookup_timeout}
        try:
            await self._call(_Request("pin/add", params, self._timeout_s))
        except _NodeLookupTimeoutError:
            raise BlobNotFoundError(f"IPFS node cannot find {cid} to pin it") from None

    async def unpin(self, cid: str) -> None:
        """Remove the pin of `cid` (idempotent); its blocks stay until garbage collection."""
        _parse_cid(cid)
        params = {"arg": cid, "recursive": "true", "timeout": self._node_lookup_timeout}
        try:
            await self._call(_Request("pin/rm", params, self._timeout_s))
        except _NodeRejectedError as error:
            if _NOT_PINNED_MESSAGE not in error.message:
                raise StorageUnavailableError(f"IPFS pin/rm {cid} failed: {error}") from None
        except _NodeLookupTimeoutError:
            pass  # The node does not know the CID at all: nothing is pinned.
        self._unpin_count += 1

    async def delete(self, cid: str) -> None:
        """Unpin `cid`, then garbage-collect unless disabled. Idempotent."""
        await self.unpin(cid)
        if self._collect_garbage_on_delete:
            await self._collect_garbage_covering(self._unpin_count)

    async def has(self, cid: str) -> bool:
        """Whether the node holds the root block of `cid` (a short lookup; exact offline)."""
        _parse_cid(cid)
        # `offline` keeps Kubo from searching the network: it answers from its own blockstore.
        params = {"arg": cid, "timeout": self._has_timeout, "offline": "true"}
        try:
            await self._call(_Request("block/stat", params, self._timeout_s))
        except _NodeLookupTimeoutError:
            return False
        except _NodeRejectedError as error:
            raise StorageUnavailableError(f"IPFS block/stat {cid} failed: {error}") from None
        return True

    async def pinned(self) -> set[str]:
        """The CIDs pinned recursively on the node (what replication counts as copies)."""
        params = {"type": "recursive", "cid-base": "base32", "stream": "true"}
        body = await self._call(_Request("pin/ls", params, self._timeout_s))
        pinned: set[str] = set()
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as error:
                raise StorageUnavailableError(f"IPFS pin/ls sent invalid JSON: {error}") from None
            if isinstance(entry, dict) and isinstance(entry.get("Cid"), str):
                pinned.add(entry["Cid"])
        return pinned

    async def repair(self, cid: str, data: bytes) -> None:
        """Replace whatever the node holds for `cid` by `data` (bytes already checked against
        the anchor): unpin, remove every block of the DAG, add again. Kubo's `add` keeps a
        block it already has, corrupt or not, so the blocks must go first."""
        if compute_cid(data).to_text() != cid:
            raise ValueError(f"the bytes given to repair {cid} have another CID")
        await self.unpin(cid)
        for block in block_cids(data):
            params = {"arg": block.to_text(), "force": "true"}
            try:
                await self._call(_Request("block/rm", params, self._timeout_s))
            except (StorageUnavailableError, _NodeLookupTimeoutError) as error:
                # Absent already, or refused: the add below and the caller's check decide.
                logger.warning("IPFS block/rm %s during repair: %s", block.to_text(), error)
        await self.put(data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- beyond the protocol ---------------------------------------------------------------

    async def version(self) -> str:
        """The node's version string (a cheap health check)."""
        body = await self._call(_Request("version", {}, self._timeout_s))
        version = _last_json_line(body).get("Version")
        if not isinstance(version, str):
            raise StorageUnavailableError("IPFS node answered /version without a version")
        return version

    async def collect_garbage(self) -> int:
        """Run the node's garbage collector now; returns the number of blocks removed."""
        async with self._garbage_collection_lock:
            return await self._run_garbage_collection()

    # -- internals -------------------------------------------------------------------------

    async def _collect_garbage_covering(self, unpin_ticket: int) -> None:
        async with self._garbage_collection_lock:
            if self._unpins_covered_by_collection >= unpin_ticket:
                return  # a run that started after our unpin has already finished
            covered = self._unpin_count
            await self._run_garbage_collection()
            self._unpins_covered_by_collection = max(self._unpins_covered_by_collection, covered)

    async def _run_garbage_collection(self) -> int:
        request = _Request("repo/gc", {}, self._garbage_collection_timeout_s, retryable=False)
        body = await self._call(request)
        removed = 0
        for line in body.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("Error") or entry.get("Err"):
                logger.warning("IPFS garbage collection reported: %s", entry)
            else:
                removed += 1
        return removed

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def _call(
        self, request: _Request, *, data: bytes | None = None, limit_bytes: int | None = None
    ) -> bytes:
        """POST `request` with retries; the response body, or the mapped error."""
        attempts = self._retries + 1 if request.retryable else 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff_delay_s(attempt))
            try:
                with metrics.dependency_call("ipfs", request.path):
                    return await self._post_once(request, data, limit_bytes)
            except _RetryableError as error:
                last_error = error
                logger.debug(
                    "IPFS %s attempt %d failed: %s", request.path, attempt + 1, error.detail
                )
            except _NodeRejectedError as error:
                if request.path in ("pin/rm", "block/stat"):
                    raise  # the caller gives these messages a meaning
                raise StorageUnavailableError(f"IPFS {request.path} failed: {error}") from None
        detail = last_error.detail if isinstance(last_error, _RetryableError) else last_error
        logger.warning(
            "IPFS node at %s unavailable for %s after %d attempt(s): %s",
            self._api_url,
            request.path,
            attempts,
            detail,
        )
        raise StorageUnavailableError(
            f"IPFS node unavailable for {request.path} after {attempts} attempt(s): {last_error}"
        )

    def _backoff_delay_s(self, attempt: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_base_s * (2 ** (attempt - 1)))
        # Jitter keeps many callers that failed together from retrying in lockstep.
        return ceiling * random.uniform(0.5, 1.0)

    async def _post_once(
        self, request: _Request, data: bytes | None, limit_bytes: int | None
    ) -> bytes:
        form: aiohttp.FormData | None = None
        if data is not None:
            form = aiohttp.FormData()
            # An explicit content type: some `/api/v0` servers reject a file part without one.
            form.add_field("file", data, filename="blob", content_type="application/octet-stream")
        timeout = aiohttp.ClientTimeout(total=request.timeout_s)
        url = f"{self._api_url}/{request.path}"
        try:
            async with self._client_session().post(
                url, params=dict(request.params), data=form, timeout=timeout
            ) as response:
                if response.status != 200:
                    error_body = await _read_limited(response, _ERROR_BODY_LIMIT_BYTES)
                    _raise_for_error(response.status, error_body)
                body = await _read_limited(response, limit_bytes)
                # Kubo reports errors that happen mid-stream in a trailer, not the status.
                stream_error = response.headers.get("X-Stream-Error")
                if stream_error:
                    _raise_for_error(500, json.dumps({"Message": stream_error}).encode())
                return body
        except TimeoutError as error:
            raise _RetryableError(f"no answer within {request.timeout_s} s") from error
        except aiohttp.ClientError as error:
            # aiohttp's message names the host and port: only the log may see it.
            raise _RetryableError(
                f"cannot connect ({type(error).__name__})", f"{type(error).__name__}: {error}"
            ) from error


def _raise_for_error(status: int, body: bytes) -> None:
    message = _error_message(body)
    if any(not_held in message for not_held in _NOT_HELD_MESSAGES):
        raise _NodeLookupTimeoutError(message)
    if status >= 500 and "not pinned" not in message and "invalid" not in message.lower():
        raise _RetryableError(f"HTTP {status}: {message}")
    raise _NodeRejectedError(status, message)


class _ResponseTooLargeError(BlobCorruptedError):
    """The node sent more bytes than any blob this store accepts."""


async def _read_limited(response: aiohttp.ClientResponse, limit_bytes: int | None) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
        total += len(chunk)
        if limit_bytes is not None and total > limit_bytes:
            raise _ResponseTooLargeError(
                f"IPFS node sent more than {limit_bytes} bytes; no stored blob is that large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _error_message(body: bytes) -> str:
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()[:500]
    if isinstance(decoded, dict) and isinstance(decoded.get("Message"), str):
        return decoded["Message"]
    return str(decoded)[:500]


def _last_json_line(body: bytes) -> dict[str, Any]:
    """The last object of a newline-delimited JSON answer (`add` streams one per file)."""
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise StorageUnavailableError("IPFS node sent an empty answer")
    try:
        decoded = json.loads(lines[-1])
    except ValueError as error:
        raise StorageUnavailableError(f"IPFS node sent invalid JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise StorageUnavailableError("IPFS node sent JSON that is not an object")
    return decoded


def _parse_cid(cid: str) -> ContentId:
    """Reject malformed CIDs before they reach the node (InvalidCidError is a ValueError)."""
    return ContentId.from_text(cid)
