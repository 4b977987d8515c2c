"""The one HSM worker of this process, shared by the validator signer and the KEK ring.

PKCS#11 login and SoftHSM's thread safety are per process (`emrchain/hsm/worker.py`), so
everything in a node that needs the token goes through the same `HsmWorker`. It is started on
first use and closed at exit (`HsmWorker.start` registers that).
"""

from __future__ import annotations

import threading

from emrchain.hsm.config import HsmConfig
from emrchain.hsm.worker import HsmUnavailableError, HsmWorker

_lock = threading.Lock()


def process_worker(config: HsmConfig) -> HsmWorker:
    """The running worker of this process (started now if there is none).

    A worker already running for another token or module is refused: one process talks to
    one token.
    """
    with _lock:
        running = HsmWorker._running
        if running is not None and running._is_serving():
            if running.config != config:
                raise HsmUnavailableError(
                    f"this process already uses HSM token {running.config.token_label!r} "
                    f"({running.config.module_path}); cannot also open {config.token_label!r}"
                )
            return running
        worker = HsmWorker(config)
        worker.start()
        return worker
