"""Keys and signatures: the signer protocol (file key now, HSM key later) and verification."""

from emrchain.crypto.keys import Ed25519Signer, Signer, verify_signature

__all__ = ["Ed25519Signer", "Signer", "verify_signature"]
