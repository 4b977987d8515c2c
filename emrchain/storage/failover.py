"""Reads that survive the local blob store: other organisations' IPFS nodes as fallbacks, and
repair of a corrupt local copy from theirs (`docs/spec/records.md` §10).

`FailoverBlobStore` is the node's `BlobStore` when `[records] replication_peers` names other
hospitals' IPFS RPC APIs. Writes, pins and deletes go to the local store only (a node never
changes another hospital's store). A read asks the local store first; when it is down, does not
have the blob, or returns bytes that fail the anchor's SHA-256, each peer is asked in turn, and
their bytes are checked against the same anchor (a peer is no more trusted than the local
node). Bytes that failed the check locally are then replaced by the verified ones (`repair`):
the corrupt blob is never served and does not stay.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    BlobStore,
    StorageError,
    StorageUnavailableError,
)

logger = logging.getLogger(__name__)


@runtime_checkable
class RepairableStore(Protocol):
    async def repair(self, cid: str, data: bytes) -> None:
        """Replace what the store holds for `cid` by `data` (already verified)."""
        ...


@dataclass
class FailoverCounters:
    local_reads: int = 0
    peer_reads: int = 0
    """Reads served by a peer because the local store failed."""
    repairs: int = 0
    repair_failures: int = 0


class FailoverBlobStore:
    """A local `BlobStore` with other organisations' stores to read from when it fails."""

    def __init__(self, local: BlobStore, peers: Sequence[tuple[str, BlobStore]]) -> None:
        self.local = local
        self.peers = tuple(peers)
        self.counters = FailoverCounters()

    async def put(self, data: bytes) -> str:
        return await self.local.put(data)

    async def pin(self, cid: str) -> None:
        await self.local.pin(cid)

    async def delete(self, cid: str) -> None:
        await self.local.delete(cid)

    async def has(self, cid: str) -> bool:
        return await self.local.has(cid)

    async def get(self, cid: str, expected_sha256: bytes) -> bytes:
        try:
            data = await self.local.get(cid, expected_sha256)
        except BlobCorruptedError as error:
            local_error: StorageError = error
        except (BlobNotFoundError, StorageUnavailableError) as error:
            local_error = error
        else:
            self.counters.local_reads += 1
            return data
        logger.warning("local blob store failed for %s (%s); asking peers", cid, local_error)
        replica = await self.from_peers(cid, expected_sha256)
        if replica is None:
            raise local_error
        self.counters.peer_reads += 1
        if isinstance(local_error, BlobCorruptedError):
            await self._repair(cid, replica)
        return replica

    async def from_peers(self, cid: str, expected_sha256: bytes) -> bytes | None:
        """The verified bytes of `cid` from the first peer that has them, or None."""
        for organization_id, peer in self.peers:
            try:
                return await peer.get(cid, expected_sha256)
            except StorageError as error:
                logger.info("peer %s cannot serve %s: %s", organization_id, cid, error)
        return None

    async def _repair(self, cid: str, data: bytes) -> None:
        try:
            if isinstance(self.local, RepairableStore):
                await self.local.repair(cid, data)
            else:
                await self.local.put(data)  # e.g. the local directory store: rewrites it
            await self.local.get(cid, hashlib.sha256(data).digest())
        except StorageError as error:
            self.counters.repair_failures += 1
            logger.error("repair of %s from a replica failed: %s", cid, error)
            return
        self.counters.repairs += 1
        logger.warning("repaired the corrupt local copy of %s from a replica", cid)

    async def close(self) -> None:
        await self.local.close()
        for _, peer in self.peers:
            await peer.close()
