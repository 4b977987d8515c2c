"""PKCS#11 HSM support: one worker thread per process, an Ed25519 signer, a versioned KEK ring.

See docs/spec/hsm.md for labels, the PIN source, the threading model and what never leaves
the token.
"""

from emrchain.hsm.config import DEFAULT_MODULE_PATH, HsmConfig, PinSource, PinUnavailableError
from emrchain.hsm.key_ring import HsmKeyEncryptionKey, HsmKeyRing, InvalidWrappedKeyError
from emrchain.hsm.signer import HsmSigner, UnsafeKeyError, decode_ec_point
from emrchain.hsm.worker import HsmContext, HsmKeyNotFoundError, HsmUnavailableError, HsmWorker

__all__ = [
    "DEFAULT_MODULE_PATH",
    "HsmConfig",
    "HsmContext",
    "HsmKeyEncryptionKey",
    "HsmKeyNotFoundError",
    "HsmKeyRing",
    "HsmSigner",
    "HsmUnavailableError",
    "HsmWorker",
    "InvalidWrappedKeyError",
    "PinSource",
    "PinUnavailableError",
    "UnsafeKeyError",
    "decode_ec_point",
]
