"""Which key a node signs consensus messages with: a key file (default) or the HSM.

With `[keys] backend = "hsm"` the validator key is the token's non-extractable Ed25519 key
labelled `[keys] hsm_validator_key_label`; the token, module and PIN source are those of
`[records] hsm_*` (a node has one HSM). The key must already exist: a validator key generated
silently at start would not be the one in genesis.
"""

from __future__ import annotations

from pathlib import Path

from emrchain.config.node import NodeConfig
from emrchain.crypto.keys import Signer
from emrchain.hsm.config import HsmConfig, PinSource
from emrchain.hsm.process import process_worker
from emrchain.hsm.signer import HsmSigner
from emrchain.keystore.file import load_key_file


def hsm_config_of(config: NodeConfig) -> HsmConfig:
    """The node's HSM settings (`[records] hsm_*`) as an `HsmConfig`."""
    section = config.records
    return HsmConfig(
        module_path=Path(section.hsm_module_path),
        token_label=section.hsm_token_label,
        pin_source=PinSource(environment_variable=section.hsm_pin_environment_variable),
    )


def validator_signer(config: NodeConfig) -> Signer:
    """The validator's signer: the key file, or the HSM key (HsmUnavailableError if absent)."""
    if config.keys.backend == "hsm":
        worker = process_worker(hsm_config_of(config))
        return HsmSigner(worker, config.keys.hsm_validator_key_label)
    return load_key_file(config.validator_key_path)
