"""Log lines about client faults, at most one per interval for each kind of fault.

A flood of malformed requests, refused connections or accept errors is the client's doing; a
line per occurrence would let any client fill the node's disk (the review saw a 67 MB log in
17 s). The line that is written next says how many were left out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping


class ThrottledLog:
    """At most one line per `interval_s` through `logger`, at warning level."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = -math.inf
        self.suppressed = 0
        self.total = 0

    def allow(self) -> int | None:
        """None if a line was written within the interval; else how many were left out since
        the last one (and the interval starts again)."""
        self.total += 1
        now = self._clock()
        if now < self._next_at:
            self.suppressed += 1
            return None
        self._next_at = now + self._interval_s
        left_out, self.suppressed = self.suppressed, 0
        return left_out

    def warning(
        self,
        message: str,
        *arguments: object,
        exc_info: bool = False,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Log `message` unless a line was written within the interval; True if written.
        `exc_info`: with the current exception's traceback (for bugs, not client faults);
        `extra`: fields for structured (JSON) log lines."""
        left_out = self.allow()
        if left_out is None:
            return False
        if left_out:
            message += " (and %d more like it since the last line)"
            arguments = (*arguments, left_out)
        self._logger.warning(message, *arguments, exc_info=exc_info, extra=extra)
        return True


class ThrottleFilter(logging.Filter):
    """For a logger that a library writes client faults to (aiohttp logs every malformed
    request with its traceback): one line per interval, the exception's message instead of
    its traceback."""

    def __init__(self, throttle: ThrottledLog) -> None:
        super().__init__()
        self._throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = self._throttle.allow()
        if left_out is None:
            return False
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += f": {type(error).__name__}: {error}"
        if left_out:
            message += f" (and {left_out} more like it since the last line)"
        record.msg, record.args = message, ()
        record.exc_info, record.exc_text = None, None
        return True
