"""Stamps the node's consensus position on every log record (JSON logs show it as fields).

A filter on the root logger's handlers, so records of every logger pass through it; a record
that already names its height (an `extra`) keeps it. Reading the position is two attribute reads
and no lock: a record written from the store's writer thread may show the position of a moment
before, which is all a log line needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ConsensusLogContext(logging.Filter):
    def __init__(self, position: Callable[[], tuple[int, int] | None]) -> None:
        super().__init__()
        self._position = position

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "height"):
            position = self._position()
            if position is not None:
                record.height, record.round = position
        return True


@contextmanager
def consensus_log_context(position: Callable[[], tuple[int, int] | None]) -> Iterator[None]:
    """The filter on the root handlers while the block runs."""
    context = ConsensusLogContext(position)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(context)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(context)
