"""The record read path: cache first, then the blob store, every byte checked against the anchor.

A cache is shared and best effort, so what it returns is untrusted: an entry whose SHA-256
differs from the anchored one is evicted and the read falls through to the store (which checks
its own bytes). Only verified bytes are ever cached or returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging

from emrchain import metrics
from emrchain.storage.interfaces import BlobStore, Cache, StorageError

logger = logging.getLogger(__name__)


async def read_through(cache: Cache, store: BlobStore, cid: str, expected_sha256: bytes) -> bytes:
    """The bytes of `cid` whose SHA-256 equals `expected_sha256`, from `cache` or `store`.

    Raises what `store.get` raises (BlobNotFoundError, BlobCorruptedError,
    StorageUnavailableError); a bad cache entry never surfaces as an error.
    """
    cached = await cache.get(cid)
    if cached is not None:
        if hmac.compare_digest(hashlib.sha256(cached).digest(), expected_sha256):
            metrics.CIPHERTEXT_CACHE.labels("hit").inc()
            return cached
        # Poisoned or stale: drop it so the next reader does not pay for it again.
        logger.warning("cache entry for %s failed its hash check; evicted", cid)
        with contextlib.suppress(StorageError):  # best effort: a down cache serves misses
            await cache.delete(cid)
    metrics.CIPHERTEXT_CACHE.labels("miss").inc()
    data = await store.get(cid, expected_sha256)
    await cache.set(cid, data)
    return data
