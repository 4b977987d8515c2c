"""Keys and signatures: the signer protocol (a key file here, an HSM token in `emrchain/hsm/`)
and verification through the core (`keys.py`); which Ed25519 keys the member registry accepts
(`keycheck.py`); members' X25519 encryption key pairs (`encryption_keys.py`)."""

from emrchain.crypto.keys import Ed25519Signer, Signer, verify_signature

__all__ = ["Ed25519Signer", "Signer", "verify_signature"]
