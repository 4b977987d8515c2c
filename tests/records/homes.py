"""Test homes configured for the real services, always through the strict config loader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from emrchain.config.genesis import parse_genesis
from emrchain.config.homes import create_testnet
from emrchain.config.node import NodeConfig, load_node_config, render_node_config


def configure_home(
    home: Path, *, records: dict[str, Any] | None = None, keys: dict[str, Any] | None = None
) -> NodeConfig:
    """Rewrite `home`'s node.toml with these `[records]` / `[keys]` values, then load it back
    strictly (a value the loader refuses fails here, as it would at `emrchain start`)."""
    config = load_node_config(home)
    config = dataclasses.replace(
        config,
        records=dataclasses.replace(config.records, **(records or {})),
        keys=dataclasses.replace(config.keys, **(keys or {})),
    )
    config.config_path.write_text(render_node_config(config))
    return load_node_config(home)


def hsm_settings(token: Any) -> dict[str, Any]:
    """`[records] hsm_*` values naming a `SoftHsmToken` fixture's token."""
    return {
        "hsm_module_path": str(token.module_path),
        "hsm_token_label": token.token_label,
        "hsm_pin_environment_variable": token.pin_environment_variable,
    }


def seal_organization_key(config: NodeConfig, worker: Any) -> None:
    """Seal `config`'s organisation key under its HSM KEK ring (made here if the token has no
    version yet), as a node with `kek_backend = "hsm"` requires."""
    from emrchain.hsm import HsmKeyRing
    from emrchain.records.key_rings import HsmCustodyKeyRing
    from emrchain.records.organization_key import seal_organization_key_file

    ring = HsmCustodyKeyRing(HsmKeyRing(worker, config.records.hsm_kek_label_prefix))
    if not ring.versions():
        ring.generate()
    seal_organization_key_file(config.organization_key_path, ring)


def replace_validator_keys(homes: list[Path], public_keys: list[bytes]) -> None:
    """Put `public_keys` (e.g. generated in an HSM) in every home's genesis, in home order."""
    for home in homes:
        config = load_node_config(home)
        document = json.loads(config.genesis_path.read_text())
        for validator, public_key in zip(document["validators"], public_keys, strict=True):
            validator["public_key"] = public_key.hex()
        parse_genesis(document, str(config.genesis_path))  # still a valid genesis
        config.genesis_path.write_text(json.dumps(document, indent=2))


def single_node_home(root: Path) -> Path:
    """A one-validator home (its own organisation, hospital-0)."""
    homes, _ = create_testnet(root, validators=1, chain_id="emrchain-records", host="127.0.0.1",
                              base_port=0)
    return homes[0]
