"""The signature of the node's webhook events (`docs/spec/records.md` §12), shared by the node
that signs them and the client library that checks them.

The node signs HMAC-SHA256(secret, timestamp_ms ‖ "." ‖ body) with the secret of
`[notifications] secret_file`, and sends it hex-encoded as `sha256=<hex>`. The timestamp is in
the signed bytes so a receiver can refuse old replays; the event id lets it drop duplicates
(delivery is at-least-once).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER_WEBHOOK_SIGNATURE = "X-Emrchain-Webhook-Signature"
HEADER_WEBHOOK_TIMESTAMP = "X-Emrchain-Webhook-Timestamp"
HEADER_WEBHOOK_EVENT_ID = "X-Emrchain-Webhook-Event-Id"
SIGNATURE_SCHEME = "sha256="
TIMESTAMP_MAX_DIGITS = 20


def webhook_signature(secret: bytes, timestamp_ms: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp_ms.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def verify_webhook(
    secret: bytes,
    body: bytes,
    timestamp_ms: str | None,
    signature: str | None,
    *,
    now_ms: int | None = None,
    max_age_ms: int = 300_000,
) -> bool:
    """True iff `signature` is the node's over this timestamp and body (compared in constant
    time) and, with `now_ms`, the timestamp is at most `max_age_ms` from it."""
    if timestamp_ms is None or signature is None:
        return False
    if not (timestamp_ms.isascii() and timestamp_ms.isdigit()):
        return False
    if len(timestamp_ms) > TIMESTAMP_MAX_DIGITS:
        return False
    if now_ms is not None and abs(now_ms - int(timestamp_ms)) > max_age_ms:
        return False
    expected = webhook_signature(secret, timestamp_ms, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace"))
