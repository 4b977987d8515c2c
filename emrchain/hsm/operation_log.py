"""The HSM operation log: one record per PKCS#11 operation the worker runs.

Each record says what was done (`operation`: sign, wrap, unwrap, generate_kek, ...), with which
key (`key_label`), for whom (`caller`: the first function outside the HSM package and the
key-ring adapter on the calling thread's stack, and that thread's name), when (`time`, UTC wall
clock with milliseconds: an audit trail, not consensus input), how long it took, and the result
(`ok`, `error:<type>` or `timeout`). Records go to the logger `emrchain.hsm.operations` at INFO
as one line of `key=value` pairs, so the node's logging configuration decides where they are
kept. No record carries key material, data or a PIN.
"""

from __future__ import annotations

import datetime
import logging
import sys
import threading
from dataclasses import dataclass

OPERATIONS_LOGGER_NAME = "emrchain.hsm.operations"
operations_logger = logging.getLogger(OPERATIONS_LOGGER_NAME)
_HSM_PACKAGE = "emrchain.hsm"
# Modules that only forward to the HSM: the caller worth recording is whoever called them.
_FORWARDING_MODULES = (_HSM_PACKAGE, "emrchain.records.key_rings")
_MAX_FRAMES = 32


@dataclass(frozen=True, slots=True)
class OperationRecord:
    operation: str
    key_label: str
    caller: str
    time: str
    result: str
    duration_ms: float

    def line(self) -> str:
        return (
            f"hsm_operation operation={self.operation} key_label={self.key_label or '-'} "
            f"caller={self.caller} time={self.time} result={self.result} "
            f"duration_ms={self.duration_ms:.2f}"
        )


def calling_code() -> str:
    """`module.qualified_function [thread]` of the nearest caller outside the HSM package and
    the modules that only forward to it."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        module = str(frame.f_globals.get("__name__", "?"))
        if not module.startswith(_FORWARDING_MODULES):
            return f"{module}.{frame.f_code.co_qualname} [{threading.current_thread().name}]"
        frame = frame.f_back  # type: ignore[assignment]
    return f"{_HSM_PACKAGE} [{threading.current_thread().name}]"


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def record_operation(record: OperationRecord) -> None:
    operations_logger.info("%s", record.line())
