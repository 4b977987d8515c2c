"""How `emrchain start` writes its log: `[log] format` = "text" or "json".

JSON is one object per line (newlines inside a message are escaped, so a line is always one
event): `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, and the event's
`height`, `round`, `peer` and `request` fields when it has them (a record's `extra`, or the
consensus position the node stamps on every record, `emrchain/node/log_context.py`), plus
`exception` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import time

CONTEXT_FIELDS = ("height", "round", "peer", "request")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Root logging for a node process, on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
