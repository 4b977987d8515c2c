"""The HSM operation log: every operation on a real SoftHSM2 token leaves one record naming
the operation, the key label, the caller, the time and the result, and never a secret."""

from __future__ import annotations

import datetime
import os
import re

import pytest

from emrchain.hsm import HsmKeyRing, HsmSigner, HsmWorker, InvalidWrappedKeyError
from emrchain.hsm.operation_log import OPERATIONS_LOGGER_NAME

RECORD = re.compile(
    r"hsm_operation operation=(?P<operation>\S+) key_label=(?P<label>\S+) "
    r"caller=(?P<caller>\S+ \[[^\]]+\]) time=(?P<time>\S+) result=(?P<result>\S+) "
    r"duration_ms=(?P<duration>[0-9.]+)"
)


def records(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    found = []
    for entry in caplog.records:
        if entry.name == OPERATIONS_LOGGER_NAME:
            match = RECORD.fullmatch(entry.getMessage())
            assert match, entry.getMessage()
            found.append(match.groupdict())
    return found


def test_wrap_unwrap_and_a_failed_unwrap_are_logged_with_label_caller_time_result(
    hsm_worker: HsmWorker, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"kek{os.urandom(3).hex()}"
    ring = HsmKeyRing(hsm_worker, prefix)
    kek = ring.generate_version()
    data_key = os.urandom(32)
    caplog.clear()
    with caplog.at_level("INFO", logger=OPERATIONS_LOGGER_NAME):
        wrapped = kek.wrap(data_key)
        assert kek.unwrap(wrapped) == data_key
        with pytest.raises(InvalidWrappedKeyError):
            kek.unwrap(bytes([wrapped[0] ^ 1]) + wrapped[1:])
    logged = records(caplog)
    assert [(r["operation"], r["label"], r["result"]) for r in logged] == [
        ("wrap", f"{prefix}-v1", "ok"),
        ("unwrap", f"{prefix}-v1", "ok"),
        ("unwrap", f"{prefix}-v1", "error:InvalidWrappedKeyError"),
    ]
    this_test = f"{__name__}.test_wrap_unwrap_and_a_failed_unwrap_are_logged"
    for record in logged:
        assert record["caller"].startswith(this_test), record["caller"]
        when = datetime.datetime.fromisoformat(record["time"])
        assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(minutes=5)
    text = caplog.text
    assert data_key.hex() not in text and wrapped.hex() not in text


def test_signing_and_key_generation_are_logged(
    hsm_worker: HsmWorker, caplog: pytest.LogCaptureFixture
) -> None:
    label = f"signer-{os.urandom(3).hex()}"
    with caplog.at_level("INFO", logger=OPERATIONS_LOGGER_NAME):
        signer = HsmSigner.generate(hsm_worker, label)
        signer.sign(b"a vote")
        with pytest.raises(ValueError, match="already exists"):
            HsmSigner.generate(hsm_worker, label)
    logged = [(r["operation"], r["label"], r["result"]) for r in records(caplog)]
    assert logged == [
        ("generate_signing_key", label, "ok"),
        ("load_signing_key", label, "ok"),
        ("sign", label, "ok"),
        ("generate_signing_key", label, "error:ValueError"),
    ]
