"""Key files: Ed25519 keys in owner-only JSON files (an HSM-held key is `emrchain/hsm/`)."""

from emrchain.keystore.file import (
    KEY_FILE_MODE,
    KeystoreError,
    generate_key_file,
    load_key_file,
    node_id,
    write_key_file,
)

__all__ = [
    "KEY_FILE_MODE",
    "KeystoreError",
    "generate_key_file",
    "load_key_file",
    "node_id",
    "write_key_file",
]
