"""The HSM worker: every PKCS#11 call on one thread, timeouts, lifecycle, PIN sources."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pkcs11
import pytest

from emrchain.crypto.keys import verify_signature
from emrchain.hsm import (
    HsmConfig,
    HsmContext,
    HsmKeyRing,
    HsmSigner,
    HsmUnavailableError,
    HsmWorker,
    PinSource,
    PinUnavailableError,
)
from emrchain.hsm.worker import open_with_retries
from tests.services.fixtures import HSM_PIN_ENVIRONMENT_VARIABLE, SoftHsmToken


@pytest.fixture
def worker(softhsm_token: SoftHsmToken) -> Iterator[HsmWorker]:
    started = HsmWorker(softhsm_token.config, call_timeout_ms=5_000)
    started.start()
    yield started
    started.close()


def test_concurrent_callers_are_serialized_on_one_thread(worker: HsmWorker) -> None:
    signer = HsmSigner.generate(worker, f"concurrent-{os.urandom(4).hex()}")
    kek = HsmKeyRing(worker, f"conc{os.urandom(3).hex()}").generate_version()
    threads_seen: set[int] = set()

    def record_thread(context: HsmContext) -> None:
        threads_seen.add(threading.get_ident())

    def mixed_work(caller: int) -> int:
        checked = 0
        for index in range(60):
            message = f"{caller}:{index}".encode()
            assert verify_signature(signer.public_key, message, signer.sign(message))
            data_key = os.urandom(32)
            assert kek.unwrap(kek.wrap(data_key)) == data_key
            worker.call(record_thread)
            checked += 1
        return checked

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(mixed_work, range(8)))
    assert results == [60] * 8
    assert len(threads_seen) == 1
    assert threads_seen != {threading.get_ident()}


def test_only_one_worker_per_process(worker: HsmWorker, softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(RuntimeError, match="one per process"):
        HsmWorker(softhsm_token.config).start()
    worker.call(lambda context: None)  # the running worker is unaffected


def test_slow_call_times_out_and_the_worker_keeps_serving(worker: HsmWorker) -> None:
    started = time.monotonic()
    with pytest.raises(HsmUnavailableError, match="did not finish"):
        worker.call(lambda context: time.sleep(3.0), timeout_ms=100)
    # Bounded by the call's timeout, not by the 3 s call (margin for a loaded machine).
    assert time.monotonic() - started < 1.5
    # The worker finishes the slow call, then serves the next one.
    assert worker.call(lambda context: "still serving", timeout_ms=10_000) == "still serving"


def test_operation_errors_reach_the_caller_not_the_worker(worker: HsmWorker) -> None:
    def failing(context: HsmContext) -> None:
        raise LookupError("from the operation")

    with pytest.raises(LookupError, match="from the operation"):
        worker.call(failing)
    assert worker.call(lambda context: 7) == 7


def test_closed_worker_refuses_calls_and_a_new_one_can_start(
    softhsm_token: SoftHsmToken,
) -> None:
    first = HsmWorker(softhsm_token.config)
    first.start()
    signer = HsmSigner.generate(first, f"restart-{os.urandom(4).hex()}")
    first.close()
    first.close()  # idempotent
    with pytest.raises(HsmUnavailableError, match="not running"):
        signer.sign(b"after close")
    # A new worker logs in again (fresh C_Initialize) and finds the same token key.
    with HsmWorker(softhsm_token.config) as second:
        again = HsmSigner(second, signer.key_label)
        assert again.public_key == signer.public_key
        assert verify_signature(again.public_key, b"m", again.sign(b"m"))


def test_wrong_pin_and_unknown_token_fail_cleanly(softhsm_token: SoftHsmToken) -> None:
    wrong_pin_variable = "EMRCHAIN_TEST_WRONG_PIN"
    os.environ[wrong_pin_variable] = "not-the-pin"
    try:
        wrong_pin = HsmConfig(softhsm_token.module_path, softhsm_token.token_label,
                              PinSource(environment_variable=wrong_pin_variable))
        with pytest.raises(HsmUnavailableError, match="PinIncorrect") as raised:
            HsmWorker(wrong_pin).start()
        assert "not-the-pin" not in str(raised.value)
    finally:
        del os.environ[wrong_pin_variable]
    unknown_token = HsmConfig(softhsm_token.module_path, "no-such-token",
                              PinSource(environment_variable=HSM_PIN_ENVIRONMENT_VARIABLE))
    with pytest.raises(HsmUnavailableError, match="no-such-token"):
        HsmWorker(unknown_token).start()
    missing_module = HsmConfig(Path("/nonexistent/libpkcs11.so"), softhsm_token.token_label,
                               PinSource(environment_variable=HSM_PIN_ENVIRONMENT_VARIABLE))
    with pytest.raises(HsmUnavailableError, match="nonexistent"):
        HsmWorker(missing_module).start()
    # None of the failed starts left a worker registered: a good one still starts.
    with HsmWorker(softhsm_token.config) as good:
        assert good.call(lambda context: "ok") == "ok"


def test_pin_file_must_be_private(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(os.environ[HSM_PIN_ENVIRONMENT_VARIABLE] + "\n")
    pin_file.chmod(0o644)
    with pytest.raises(PinUnavailableError, match="chmod 600"):
        PinSource(file_path=pin_file).read()
    pin_file.chmod(0o600)
    config = HsmConfig.from_mapping({
        "module_path": str(softhsm_token.module_path),
        "token_label": softhsm_token.token_label,
        "pin_file": str(pin_file),
    })
    with HsmWorker(config) as worker:
        assert worker.call(lambda context: context.session.token.label) == softhsm_token.token_label


def test_pin_sources_are_validated() -> None:
    with pytest.raises(ValueError, match="must not appear"):
        HsmConfig.from_mapping({"token_label": "t", "pin": "1234"})
    with pytest.raises(ValueError):
        PinSource()
    with pytest.raises(ValueError):
        PinSource(environment_variable="A", file_path=Path("/x"))
    with pytest.raises(PinUnavailableError, match="holds no HSM PIN"):
        PinSource(environment_variable="EMRCHAIN_TEST_SURELY_UNSET_VARIABLE").read()
    with pytest.raises(PinUnavailableError, match="cannot read"):
        PinSource(file_path=Path("/nonexistent/pin")).read()


def test_lost_session_is_reopened_for_the_next_call(worker: HsmWorker) -> None:
    signer = HsmSigner.generate(worker, f"relogin-{os.urandom(4).hex()}")
    # Simulate the HSM dropping our session (device reset, token re-inserted, ...).
    worker.call(lambda context: context.session.close())
    with pytest.raises(HsmUnavailableError, match="session lost"):
        signer.sign(b"while the session is gone")
    assert verify_signature(signer.public_key, b"after", signer.sign(b"after"))


def test_opening_retries_transient_errors_then_gives_up() -> None:
    pauses: list[float] = []
    # What SoftHSM2 answered validators whose peers were writing the shared token's files:
    # CKR_GENERAL_ERROR, CKR_USER_PIN_NOT_INITIALIZED, no such token; then a normal open.
    failures = [
        pkcs11.exceptions.NoSuchToken(),
        pkcs11.exceptions.UserPinNotInitialized(),
        pkcs11.exceptions.GeneralError(),
    ]

    def flaky_open() -> str:
        if failures:
            raise failures.pop()
        return "session"

    assert open_with_retries(flaky_open, attempts=5, sleep=pauses.append) == "session"
    assert pauses == [0.1, 0.2, 0.4]

    def always_busy() -> str:
        raise pkcs11.exceptions.GeneralError()

    pauses.clear()
    with pytest.raises(pkcs11.exceptions.GeneralError):
        open_with_retries(always_busy, attempts=3, sleep=pauses.append)
    assert pauses == [0.1, 0.2]  # three attempts, two pauses


def test_opening_does_not_retry_a_final_error() -> None:
    pauses: list[float] = []

    def wrong_pin() -> str:
        raise pkcs11.exceptions.PinIncorrect()

    with pytest.raises(pkcs11.exceptions.PinIncorrect):
        open_with_retries(wrong_pin, sleep=pauses.append)
    assert pauses == []
