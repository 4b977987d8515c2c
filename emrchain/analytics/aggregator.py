"""The sponsor's side of a study query (`docs/spec/analytics.md` §5): submit the STUDY_QUERY,
wait for its commit (the chain's accountant may refuse it), fetch every participant's masked
contribution from that participant's node, add them up (the masks cancel), release the figures
and anchor the SHA-256 of the released document with STUDY_RESULT."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emrchain.analytics.contribution import QuerySpec, released
from emrchain.analytics.secure_aggregation import MODULUS, unmask_sum
from emrchain.analytics.worker import mask_context
from emrchain.client.replies import NotFound
from emrchain.client.rpc import EmrClient
from emrchain.schema import QueryType

POLL_INTERVAL_S = 0.25


class AggregationError(RuntimeError):
    """A participant's contribution did not arrive in time, or is inconsistent."""


@dataclass(frozen=True, slots=True)
class StudyRelease:
    query_id: bytes
    height: int
    """Where the query committed."""
    figures: dict[str, Any]
    document: bytes
    """The released result, canonical JSON; its SHA-256 is anchored on chain."""
    result_sha256: bytes


def result_document(study_id: bytes, query_id: bytes, figures: dict[str, Any]) -> bytes:
    """One encoding of a released result: sorted keys, no spaces."""
    body = {"study_id": study_id.hex(), "query_id": query_id.hex(), "figures": figures}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signed(value: int) -> int:
    """A sum modulo 2^64 back to a signed integer (noise may push a small sum below zero)."""
    value %= MODULUS
    return value - MODULUS if value >= MODULUS // 2 else value


async def fetch_contribution(
    node: EmrClient, study_id: bytes, query_id: bytes, timeout_s: float
) -> dict[str, Any]:
    """Poll one participant's node until its contribution is computed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await node.study_contribution(study_id, query_id)
        except NotFound:
            if time.monotonic() >= deadline:
                raise AggregationError(
                    f"no contribution from {node.base_url} after {timeout_s:g} s"
                ) from None
            await asyncio.sleep(POLL_INTERVAL_S)


async def combine(
    sponsor: EmrClient,
    node_urls: Mapping[str, str],
    study_id: bytes,
    query_id: bytes,
    timeout_s: float,
) -> list[int]:
    """The sum of every participant's contribution, fetched from its own node."""
    study = await sponsor.study(study_id)
    participants: list[str] = list(study["participants"])
    if missing := [name for name in participants if name not in node_urls]:
        raise AggregationError(f"no node address for participants {missing}")
    replies = {}
    for organization_id in participants:
        async with EmrClient(
            node_urls[organization_id], sponsor.identity, await sponsor.chain_id()
        ) as node:
            replies[organization_id] = await fetch_contribution(node, study_id, query_id, timeout_s)
    vectors = {name: [int(item) for item in reply["vector"]] for name, reply in replies.items()}
    if not all(reply["masked"] for reply in replies.values()):
        if len(vectors) != 1:
            raise AggregationError("a participant sent an unmasked contribution")
        return next(iter(vectors.values()))
    context = mask_context(await sponsor.chain_id(), study_id, query_id)
    total = unmask_sum(vectors, participants, {}, {}, context, len(participants))
    return [signed(value) for value in total]


async def run_query(
    sponsor: EmrClient,
    node_urls: Mapping[str, str],
    study_id: bytes,
    query_type: QueryType,
    measure: str,
    *,
    epsilon: int,
    delta: int,
    lower_milli: int = 0,
    upper_milli: int = 0,
    bins: int = 0,
    timeout_s: float = 120.0,
) -> StudyRelease:
    """Run one query end to end and anchor its released result."""
    query_id = secrets.token_bytes(32)
    spec = QuerySpec(query_type, measure, lower_milli, upper_milli, bins, epsilon, delta)
    committed = await sponsor.submit_study_query(
        study_id=study_id,
        query_id=query_id,
        query_type=query_type,
        measure=measure,
        lower_milli=lower_milli,
        upper_milli=upper_milli,
        bins=bins,
        epsilon=epsilon,
        delta=delta,
    )
    total = await combine(sponsor, node_urls, study_id, query_id, timeout_s)
    figures = released(spec, total)
    document = result_document(study_id, query_id, figures)
    result_sha256 = hashlib.sha256(document).digest()
    await sponsor.anchor_study_result(study_id, query_id, result_sha256)
    return StudyRelease(query_id, committed.height, figures, document, result_sha256)
