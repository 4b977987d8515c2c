"""Webhook notifications of break-glass reviews (`docs/spec/records.md` §12).

After each committed block the node looks for reviews opened (an applied BREAK_GLASS, or a
REGISTER_MEMBER that re-enrolled a patient id) and reviews closed (an applied CLOSE_REVIEW), and
POSTs one JSON event per review change to every configured webhook, signed with HMAC-SHA256 so
the receiver (the patient's app backend, the organisation's privacy officer) can authenticate
it. Nothing here runs in execution: it reads committed blocks and state.

Delivery is at-least-once per destination. Each destination has its own cursor in the vault,
the height through which every event was delivered (or refused for good by a 4xx answer); it
moves only after delivery, so a restart sends again from the cursor (a crash between a delivery
and its cursor write sends that event twice: receivers deduplicate by `event_id`). A destination
enabled for the first time starts at the chain's height: no flood of the chain's history. An
unreachable receiver, a timeout or a 5xx/408/429 answer is retried with exponential backoff,
never given up on; other 4xx answers mean the receiver will never take the event: it is counted
as failed and skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from emrchain.api.webhooks import (
    HEADER_WEBHOOK_EVENT_ID,
    HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP,
    webhook_signature,
)
from emrchain.config.node import NodeConfig
from emrchain.schema import ReviewOutcome, TxKind
from emrchain.schema.codec import decode_payload
from emrchain.state.emr.audit import AccessEvent, EventKind
from emrchain.state.emr.entities import NO_KEY
from emrchain.state.emr.reviews import ReviewState, read_review_state, review_event
from emrchain.state.emr.tables import patient_member
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import StateView
from emrchain.storage.interfaces import StorageError
from emrchain.types import envelope
from emrchain.types.block import Block

logger = logging.getLogger(__name__)

SECRET_MIN_BYTES = 16
_REVIEW_KINDS = (TxKind.BREAK_GLASS, TxKind.REGISTER_MEMBER, TxKind.CLOSE_REVIEW)
_RETRIED_STATUSES = frozenset((408, 429))

BlockReader = Callable[[int], tuple[Sequence[bytes], Sequence[TxResult]] | None]


class NotificationSetupError(Exception):
    """The configured webhooks cannot run (no usable secret file)."""


@dataclass(slots=True)
class NotificationCounters:
    delivered: int = 0
    """Events a receiver answered 2xx."""
    failed: int = 0
    """Attempts that did not deliver (retried) and events refused for good (skipped)."""


def _hex_or_none(value: bytes) -> str | None:
    return None if value == NO_KEY else value.hex()


def _patient_organization(view: StateView, patient_id: bytes) -> str | None:
    holder = patient_member(view, patient_id)
    return None if holder is None else holder.organization_id


def review_notification(
    view: StateView,
    kind: str,
    event_id: bytes,
    height: int,
    review: ReviewState,
    opened: AccessEvent,
) -> dict[str, Any]:
    """The JSON event for a review opened or closed (`records.md` §12)."""
    closed = kind == "review_closed"
    return {
        "event": kind,
        "event_id": event_id.hex(),
        "height": height,
        "review_id": review.review_id.hex(),
        "review_kind": "break_glass"
        if opened.event_kind == EventKind.BREAK_GLASS
        else "reenrolment",
        "patient_id": opened.patient_id.hex(),
        "patient_organization": _patient_organization(view, opened.patient_id),
        "record_id": _hex_or_none(opened.record_id),
        "reader": opened.actor.hex(),
        "reader_organization": opened.actor_organization,
        "reason": opened.reason,
        "expires_at_ms": opened.expires_at_ms,
        "opened_height": opened.height,
        "outcome": ReviewOutcome(review.outcome).name.lower() if closed else None,
        "note": review.note if closed else None,
        "closed_by": review.closed_by.hex() if closed else None,
        "closed_by_organization": review.closed_by_organization if closed else None,
    }


def block_notifications(
    view: StateView, height: int, txs: Sequence[bytes], results: Sequence[TxResult]
) -> list[dict[str, Any]]:
    """The events of one committed block, in block order. A review that already left the
    queue's ring (65,536 newer ones) has no state to describe it and is skipped."""
    events = []
    for raw, result in zip(txs, results, strict=True):
        kind = envelope.kind(raw)
        if result.code != 0 or kind not in _REVIEW_KINDS:
            continue
        tx_id = hashlib.sha256(raw).digest()
        if kind == TxKind.CLOSE_REVIEW:
            review_id = decode_payload(TxKind.CLOSE_REVIEW, envelope.payload(raw))["review_id"]
            name = "review_closed"
        else:
            review_id, name = tx_id, "review_opened"
        review = read_review_state(view, review_id)
        if review is None:
            continue  # a REGISTER_MEMBER that re-enrolled nobody, or a review gone from the ring
        opened = review_event(view, review)
        if name == "review_opened":
            # The state may be closed by now; the event says what this block did.
            review = ReviewState(review.review_id, review.sequence)
        events.append(review_notification(view, name, tx_id, height, review, opened))
    return events


@dataclass(slots=True)
class Destination:
    url: str
    name: str
    """The cursor's name in the vault: a digest of the URL."""
    queue: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    read_through: int = 0
    """The last height whose events are in `queue` (or delivered)."""


class NotificationWorker:
    """Reads committed blocks and delivers their review events to every webhook."""

    def __init__(
        self,
        config: NodeConfig,
        secret: bytes,
        vault: Any,
        state_view: Callable[[], StateView],
        block_at: BlockReader,
        chain_height: Callable[[], int],
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        section = config.notifications
        self._section = section
        self._secret = secret
        self._vault = vault
        self._state_view = state_view
        self._block_at = block_at
        self._chain_height = chain_height
        self._clock_ms = clock_ms
        self.destinations = [
            Destination(url, "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:32])
            for url in section.webhook_urls
        ]
        self.counters = NotificationCounters()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def on_commit(self, block: Block, _ids: Sequence[bytes], _results: list[TxResult]) -> None:
        """Chain commit listener: the senders read the new block themselves."""
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._section.timeout_ms / 1000)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            await asyncio.gather(*(self._keep_serving(item) for item in self.destinations))

    async def _keep_serving(self, destination: Destination) -> None:
        """`_serve`, started again from the vault's cursor after an unexpected error (a vault
        or block store that failed): the node keeps running, the events are sent later."""
        while True:
            try:
                await self._serve(destination)
            except (StorageError, StateCorruptionError, OSError) as error:
                logger.error("notifications: %s stopped: %s; restarting", destination.url, error)
                destination.queue.clear()
                await asyncio.sleep(self._section.retry_max_ms / 1000)

    async def _serve(self, destination: Destination) -> None:
        cursor = self._start_cursor(destination)
        destination.read_through = cursor
        while True:
            self._fill(destination)
            if not destination.queue:
                if destination.read_through > cursor:
                    cursor = self._advance(destination, destination.read_through)
                if self._chain_height() > destination.read_through:
                    # A committed block the store did not give: try again shortly.
                    await asyncio.sleep(self._section.retry_initial_ms / 1000)
                    continue
                self._wake.clear()
                await self._wake.wait()
                continue
            height, event = destination.queue[0]
            await self._deliver(destination, event)
            destination.queue.popleft()
            done_through = destination.queue[0][0] - 1 if destination.queue else height
            if done_through > cursor:
                cursor = self._advance(destination, done_through)

    def _start_cursor(self, destination: Destination) -> int:
        cursor = self._vault.notification_cursor(destination.name)
        if cursor is None:
            cursor = self._chain_height()
            self._vault.set_notification_cursor(destination.name, cursor)
        return int(cursor)

    def _advance(self, destination: Destination, height: int) -> int:
        try:
            self._vault.set_notification_cursor(destination.name, height)
        except StorageError as error:
            # An older cursor only sends some events again after a restart.
            logger.warning("notifications: cursor of %s not advanced: %s", destination.url, error)
        return height

    def _fill(self, destination: Destination) -> None:
        """Read blocks after `read_through` while the queue has room."""
        chain_height = self._chain_height()
        view = self._state_view()
        while (
            destination.read_through < chain_height
            and len(destination.queue) < self._section.queue_max_events
        ):
            height = destination.read_through + 1
            block = self._block_at(height)
            if block is None:
                logger.error("notifications: block %d is not in the block store", height)
                return
            for event in block_notifications(view, height, *block):
                destination.queue.append((height, event))
            destination.read_through = height

    async def _deliver(self, destination: Destination, event: dict[str, Any]) -> None:
        """POST until a 2xx answer, or a 4xx that retrying cannot change."""
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        delay_ms = self._section.retry_initial_ms
        while True:
            status = await self._post(destination.url, event["event_id"], body)
            if status is not None and 200 <= status < 300:
                self.counters.delivered += 1
                return
            self.counters.failed += 1
            if status is not None and 400 <= status < 500 and status not in _RETRIED_STATUSES:
                logger.error(
                    "notifications: %s refused event %s with %d; skipped",
                    destination.url,
                    event["event_id"],
                    status,
                )
                return
            await asyncio.sleep(delay_ms / 1000)
            delay_ms = min(delay_ms * 2, self._section.retry_max_ms)

    async def _post(self, url: str, event_id: str, body: bytes) -> int | None:
        """The answer's status, or None if there was none (unreachable, timeout)."""
        assert self._session is not None
        timestamp_ms = str(self._clock_ms())
        headers = {
            "Content-Type": "application/json",
            HEADER_WEBHOOK_EVENT_ID: event_id,
            HEADER_WEBHOOK_TIMESTAMP: timestamp_ms,
            HEADER_WEBHOOK_SIGNATURE: webhook_signature(self._secret, timestamp_ms, body),
        }
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.warning("notifications: %s did not answer: %s", url, error)
            return None


def read_secret(config: NodeConfig) -> bytes:
    path = config.resolve(config.notifications.secret_file)
    try:
        secret = path.read_bytes()
    except OSError as error:
        raise NotificationSetupError(
            f"[notifications] secret_file {path}: {error.strerror or error}"
        ) from None
    if len(secret) < SECRET_MIN_BYTES:
        raise NotificationSetupError(
            f"[notifications] secret_file {path}: {len(secret)} bytes, at least "
            f"{SECRET_MIN_BYTES} needed"
        )
    return secret


def open_notifier(
    config: NodeConfig,
    vault: Any,
    state_view: Callable[[], StateView],
    block_at: BlockReader,
    chain_height: Callable[[], int],
) -> NotificationWorker | None:
    """The worker, or None without webhooks; NotificationSetupError without a usable secret."""
    if not config.notifications.webhook_urls:
        return None
    return NotificationWorker(
        config, read_secret(config), vault, state_view, block_at, chain_height
    )
