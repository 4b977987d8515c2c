"""Receiving the node's review notifications: check a webhook request's signature.

A receiver (the patient's app backend, a privacy officer's inbox) reads the raw body and the
two headers, and calls `verify_webhook` with the secret the node's operator gave it before it
trusts the JSON (`docs/client.md`, "Break-glass review notifications").
"""

from __future__ import annotations

from emrchain.api.webhooks import (
    HEADER_WEBHOOK_EVENT_ID,
    HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP,
    verify_webhook,
)

__all__ = [
    "HEADER_WEBHOOK_EVENT_ID",
    "HEADER_WEBHOOK_SIGNATURE",
    "HEADER_WEBHOOK_TIMESTAMP",
    "verify_webhook",
]
