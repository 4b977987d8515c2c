"""The one thread per process that talks to the HSM.

SoftHSM through python-pkcs11 is not thread-safe (two threads signing at once crashed the
process), and PKCS#11 login state belongs to the process: closing any session logs all of them
out. So one dedicated worker thread owns the library handle, the single logged-in read/write
session and every PKCS#11 call; other threads (and the event loop) hand it operations through a
bounded queue and wait for the result with a timeout.

An operation is a function of an `HsmContext`, run on the worker thread, which must not block
on anything but the HSM.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass

from emrchain.hsm.config import HsmConfig, PinUnavailableError
from emrchain.storage.interfaces import KeyUnavailableError

logger = logging.getLogger(__name__)

Result = TypeVar("Result")
Operation = Callable[["HsmContext"], Result]

# PKCS#11 failures after which the session is unusable: the worker logs in again before the
# next operation (the failed call itself still fails).
_SESSION_LOST_ERRORS: tuple[type[Exception], ...] = (
    pkcs11.exceptions.SessionClosed,
    pkcs11.exceptions.SessionHandleInvalid,
    pkcs11.exceptions.UserNotLoggedIn,
    pkcs11.exceptions.DeviceRemoved,
    pkcs11.exceptions.TokenNotPresent,
    pkcs11.exceptions.DeviceError,
)


class HsmUnavailableError(KeyUnavailableError):
    """The HSM cannot be used now: not started, login failed, device error or timeout."""


class HsmKeyNotFoundError(HsmUnavailableError):
    """No key with the requested label (and class) exists in the token."""


class HsmContext:
    """What an operation sees on the worker thread: the session and a key-handle cache.

    Looking a key up by label is a C_FindObjects round trip; handles stay valid for the
    session's life, so they are cached here and dropped when the session is reopened.
    """

    def __init__(self, session: pkcs11.Session) -> None:
        self.session = session
        self._keys: dict[tuple[ObjectClass, KeyType, str], Any] = {}

    def find_key(self, object_class: ObjectClass, key_type: KeyType, label: str) -> Any:
        """The one key of this class, type and label; HsmKeyNotFoundError if there is none."""
        cache_key = (object_class, key_type, label)
        key = self._keys.get(cache_key)
        if key is None:
            try:
                key = self.session.get_key(object_class=object_class, key_type=key_type,
                                           label=label)
            except pkcs11.exceptions.NoSuchKey:
                raise HsmKeyNotFoundError(
                    f"no {object_class.name} {key_type.name} key labelled {label!r} in the token"
                ) from None
            except pkcs11.exceptions.MultipleObjectsReturned:
                raise HsmUnavailableError(
                    f"several {object_class.name} keys are labelled {label!r}; labels must be "
                    "unique"
                ) from None
            self._keys[cache_key] = key
        return key

    def has_key(self, object_class: ObjectClass, key_type: KeyType, label: str) -> bool:
        try:
            self.find_key(object_class, key_type, label)
        except HsmKeyNotFoundError:
            return False
        return True

    def labels(self, object_class: ObjectClass, key_type: KeyType) -> list[str]:
        """Labels of every object of this class and type in the token."""
        objects = self.session.get_objects(
            {Attribute.CLASS: object_class, Attribute.KEY_TYPE: key_type}
        )
        return [obj[Attribute.LABEL] for obj in objects]

    def forget(self, label: str) -> None:
        """Drop cached handles of `label` (after destroying or replacing its keys)."""
        for cache_key in [cache_key for cache_key in self._keys if cache_key[2] == label]:
            del self._keys[cache_key]


_STOP = object()


class HsmWorker:
    """Owns the PKCS#11 library, the logged-in session and every call, on one thread.

    Only one worker may run per process. Use as a context manager or call `start`/`close`.
    """

    _process_lock = threading.Lock()
    _running: HsmWorker | None = None

    def __init__(
        self,
        config: HsmConfig,
        *,
        call_timeout_ms: int = 5_000,
        start_timeout_ms: int = 15_000,
        queue_capacity: int = 1_024,
    ) -> None:
        if call_timeout_ms <= 0 or start_timeout_ms <= 0 or queue_capacity <= 0:
            raise ValueError("timeouts and queue capacity must be positive")
        self._config = config
        self._call_timeout_s = call_timeout_ms / 1000
        self._start_timeout_s = start_timeout_ms / 1000
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_capacity)
        self._thread: threading.Thread | None = None
        self._process_id: int | None = None
        self._closed = False

    @property
    def config(self) -> HsmConfig:
        return self._config

    def __enter__(self) -> HsmWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Load the module, find the token, log in; HsmUnavailableError if any step fails."""
        with HsmWorker._process_lock:
            if self._thread is not None:
                raise RuntimeError("this HSM worker was already started")
            running = HsmWorker._running
            if running is not None and running._is_serving():
                raise RuntimeError(
                    "an HSM worker already runs in this process; share it (one per process)"
                )
            try:
                pin = self._config.pin_source.read()
            except PinUnavailableError as error:
                raise HsmUnavailableError(str(error)) from None
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._thread = threading.Thread(
                target=self._serve, args=(pin, ready), name="hsm-worker", daemon=True
            )
            del pin
            self._process_id = os.getpid()
            self._thread.start()
            try:
                ready.result(timeout=self._start_timeout_s)
            except concurrent.futures.TimeoutError:
                self._closed = True
                raise HsmUnavailableError(
                    f"HSM token {self._config.token_label!r} did not open within "
                    f"{self._start_timeout_s} s"
                ) from None
            except Exception as error:
                self._closed = True
                raise HsmUnavailableError(
                    f"cannot open HSM token {self._config.token_label!r} with module "
                    f"{self._config.module_path} (PIN from "
                    f"{self._config.pin_source.describe()}): {type(error).__name__} {error}"
                ) from None
            HsmWorker._running = self
        atexit.register(self.close)

    def call(self, operation: Operation[Result], timeout_ms: int | None = None) -> Result:
        """Run `operation` on the worker thread and return its result (or raise its error).

        PKCS#11 errors become HsmUnavailableError; a call not finished within the timeout
        raises HsmUnavailableError (if it was still queued, it never runs).
        """
        future = self._submit(operation, timeout_ms)
        timeout_s = self._timeout_s(timeout_ms)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise HsmUnavailableError(f"HSM call did not finish within {timeout_s} s") from None

    async def call_async(
        self, operation: Operation[Result], timeout_ms: int | None = None
    ) -> Result:
        """`call` for the event loop: waits without blocking it."""
        future = self._submit(operation, timeout_ms)
        timeout_s = self._timeout_s(timeout_ms)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise HsmUnavailableError(f"HSM call did not finish within {timeout_s} s") from None

    def close(self, timeout_ms: int = 5_000) -> None:
        """Finish queued calls, log out, release the library. Idempotent."""
        atexit.unregister(self.close)
        thread = self._thread
        if self._closed or thread is None or os.getpid() != self._process_id:
            self._closed = True
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout_ms / 1000)
        except queue.Full:
            logger.error("HSM worker queue full at shutdown; abandoning the worker thread")
            return
        thread.join(timeout=timeout_ms / 1000)
        if thread.is_alive():
            logger.error("HSM worker did not stop within %d ms", timeout_ms)
        with HsmWorker._process_lock:
            if HsmWorker._running is self:
                HsmWorker._running = None

    # -- internals -------------------------------------------------------------------------

    def _is_serving(self) -> bool:
        return (
            not self._closed
            and self._thread is not None
            and self._thread.is_alive()
            and self._process_id == os.getpid()
        )

    def _timeout_s(self, timeout_ms: int | None) -> float:
        return self._call_timeout_s if timeout_ms is None else timeout_ms / 1000

    def _submit(
        self, operation: Operation[Result], timeout_ms: int | None
    ) -> concurrent.futures.Future[Result]:
        if not self._is_serving():
            if self._process_id is not None and self._process_id != os.getpid():
                raise HsmUnavailableError(
                    "this HSM worker belongs to the parent process; start one in this process"
                )
            raise HsmUnavailableError("the HSM worker is not running")
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        try:
            self._queue.put((operation, future), timeout=self._timeout_s(timeout_ms))
        except queue.Full:
            raise HsmUnavailableError("HSM worker queue is full") from None
        return future

    def _open_session(self, pin: str) -> HsmContext:
        def open_once() -> HsmContext:
            library = pkcs11.lib(str(self._config.module_path))
            try:
                token = library.get_token(token_label=self._config.token_label)
            except pkcs11.exceptions.NoSuchToken:
                # SoftHSM2 lists its tokens once, when the library is initialised: a token
                # that another process was rewriting at that moment stays missing from this
                # process until the library scans again, so the retry must re-initialise it.
                library.reinitialize()
                raise
            return HsmContext(token.open(rw=True, user_pin=pin))

        return open_with_retries(open_once)

    def _serve(self, pin: str, ready: concurrent.futures.Future[None]) -> None:
        try:
            context: HsmContext | None = self._open_session(pin)
        except Exception as error:
            ready.set_exception(error)
            return
        ready.set_result(None)
        try:
            while True:
                job = self._queue.get()
                if job is _STOP:
                    break
                operation, future = job
                if not future.set_running_or_notify_cancel():
                    continue  # the caller gave up while it was queued
                if context is None:
                    context = self._reopen(pin)
                    if context is None:
                        future.set_exception(HsmUnavailableError("HSM session cannot be reopened"))
                        continue
                try:
                    future.set_result(operation(context))
                except _SESSION_LOST_ERRORS as error:
                    logger.warning("HSM session lost (%s); logging in again", type(error).__name__)
                    future.set_exception(
                        HsmUnavailableError(f"HSM session lost: {type(error).__name__}")
                    )
                    _close_quietly(context)
                    context = None
                except pkcs11.exceptions.PKCS11Error as error:
                    future.set_exception(
                        HsmUnavailableError(f"HSM operation failed: {type(error).__name__} {error}")
                    )
                except BaseException as error:  # the caller gets it; the worker lives on
                    future.set_exception(error)
        finally:
            if context is not None:
                _close_quietly(context)
            self._fail_queued()
            _finalize_library(str(self._config.module_path))

    def _reopen(self, pin: str) -> HsmContext | None:
        try:
            return self._open_session(pin)
        except Exception as error:
            logger.error("HSM login failed: %s", type(error).__name__)
            return None

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job[1].set_running_or_notify_cancel():
                job[1].set_exception(HsmUnavailableError("the HSM worker stopped"))


OPEN_ATTEMPTS = 5
OPEN_FIRST_BACKOFF_S = 0.1
"""Opening the token is retried on the transient errors below, 0.1 + 0.2 + 0.4 + 0.8 s at
most. A wrong PIN, an absent token or module is final and raised at once."""
_TRANSIENT_OPEN_ERRORS = (
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.UserPinNotInitialized,
    pkcs11.exceptions.NoSuchToken,
)
"""What SoftHSM2 answers while another process is rewriting the token's files, all seen when
four validators on one token started together: CKR_GENERAL_ERROR; CKR_USER_PIN_NOT_INITIALIZED
on the retry right after it (the token's state read half-written); no token with the label in
the slot list. A network HSM can blip the same way. A token whose user PIN really is not set,
or a label that really is wrong, still fails with that error after the last attempt (~1.5 s)."""


def open_with_retries(
    open_once: Callable[[], Result],
    attempts: int = OPEN_ATTEMPTS,
    first_backoff_s: float = OPEN_FIRST_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """`open_once()`, tried again after a doubling pause while it fails with a transient
    error (`_TRANSIENT_OPEN_ERRORS`), at most `attempts` times in all."""
    backoff_s = first_backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return open_once()
        except _TRANSIENT_OPEN_ERRORS as error:
            if attempt == attempts:
                raise
            logger.warning(
                "HSM token open failed with %s (attempt %d of %d); retrying",
                type(error).__name__, attempt, attempts,
            )
            sleep(backoff_s)
            backoff_s *= 2
    raise AssertionError("unreachable")


def _close_quietly(context: HsmContext) -> None:
    try:
        context.session.close()  # also logs the process out of the token
    except pkcs11.exceptions.PKCS11Error as error:
        logger.debug("closing the HSM session: %s", type(error).__name__)


def _finalize_library(module_path: str) -> None:
    """C_Finalize, so a later worker in this process starts from a fresh C_Initialize."""
    try:
        pkcs11.lib(module_path).finalize()
    except Exception as error:
        logger.debug("finalizing the PKCS#11 library: %s", error)
