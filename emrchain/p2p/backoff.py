"""Reconnect schedule for persistent peers."""

from __future__ import annotations


def backoff_delay_ms(failures: int, initial_ms: int, max_ms: int) -> int:
    """Delay before the next dial after `failures` consecutive failures: initial·2^n, capped.

    Deterministic (no jitter): the schedule is initial, 2·initial, 4·initial, … max, max, …
    """
    if failures < 0:
        raise ValueError("failures must be >= 0")
    # The exponent is capped so a long outage never builds a huge integer.
    return min(max_ms, initial_ms << min(failures, 40))
