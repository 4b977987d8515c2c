"""`[records] kek_backend = "hsm"` and `[keys] backend = "hsm"` wire the real SoftHSM2 token.

Custody wraps are made by the token's KEK (no key file appears in the home), and the
validator's consensus key is the token's non-extractable Ed25519 key: a one-validator node with
no validator key file at all commits blocks whose votes verify under the HSM's public key.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

import pytest
from nacl.public import PrivateKey, PublicKey, SealedBox

from emrchain.cli import main as cli_main
from emrchain.config.genesis import load_config_and_genesis
from emrchain.crypto.keys import verify_signature
from emrchain.hsm import HsmKeyNotFoundError, HsmKeyRing, HsmSigner
from emrchain.hsm.node_keys import validator_signer
from emrchain.keystore.file import load_key_file
from emrchain.keystore.member import load_organization_public_key
from emrchain.node.node import Node
from emrchain.records import open_record_service
from emrchain.records.key_rings import HsmCustodyKeyRing
from tests.records.homes import (
    configure_home,
    hsm_settings,
    replace_validator_keys,
    seal_organization_key,
    single_node_home,
)
from tests.services.fixtures import run


def sealed_data_key(home: Path, data_key: bytes) -> bytes:
    """The custody wrap a client makes: the data key sealed to the organisation's key."""
    config, _ = load_config_and_genesis(home)
    organization = load_organization_public_key(config.organization_key_path)
    return SealedBox(PublicKey(organization.public_key)).encrypt(data_key)


def test_hsm_kek_wraps_custody_copies_and_no_key_file_exists(
    tmp_path: Path, softhsm_token, hsm_worker
) -> None:
    home = single_node_home(tmp_path / "net")
    config = configure_home(
        home,
        records={"kek_backend": "hsm", "hsm_kek_label_prefix": "kek-wiring",
                 **hsm_settings(softhsm_token)},
    )
    seal_organization_key(config, hsm_worker)
    service = open_record_service(config)
    assert isinstance(service.key_ring, HsmCustodyKeyRing)
    reader = PrivateKey.generate()
    data_key, record_id = secrets.token_bytes(32), secrets.token_bytes(32)
    ciphertext = secrets.token_bytes(4096)

    async def scenario() -> bytes:
        try:
            stored = await service.store(record_id, ciphertext, sealed_data_key(home, data_key))
            assert await service.ciphertext(stored.cid, hashlib.sha256(ciphertext).digest()) \
                == ciphertext
            return service.seal_data_key_for(record_id, bytes(reader.public_key))
        finally:
            await service.close()

    sealed = run(scenario())
    assert SealedBox(reader).decrypt(sealed) == data_key
    assert HsmKeyRing(hsm_worker, "kek-wiring").versions() == [1]
    assert not (config.resolve(config.records.kek_dir)).exists()


def test_validator_signer_is_the_tokens_key_and_a_missing_label_is_an_error(
    tmp_path: Path, softhsm_token, hsm_worker, capsys: pytest.CaptureFixture[str]
) -> None:
    home = single_node_home(tmp_path / "net")
    generated = HsmSigner.generate(hsm_worker, "validator-wiring")
    config = configure_home(
        home,
        records=hsm_settings(softhsm_token),
        keys={"backend": "hsm", "hsm_validator_key_label": "validator-wiring"},
    )
    signer = validator_signer(config)
    assert isinstance(signer, HsmSigner)
    assert signer.public_key == generated.public_key
    message = b"prevote at height 7"
    assert verify_signature(signer.public_key, message, signer.sign(message))
    # `emrchain show-validator` prints the token's key, not the home's (unused) key file.
    assert generated.public_key != load_key_file(config.validator_key_path).public_key
    assert cli_main(["show-validator", "--home", str(home)]) == 0
    assert capsys.readouterr().out == generated.public_key.hex() + "\n"

    missing = configure_home(home, keys={"hsm_validator_key_label": "validator-absent"})
    with pytest.raises(HsmKeyNotFoundError, match="validator-absent"):
        validator_signer(missing)
    assert cli_main(["show-validator", "--home", str(home)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("emrchain show-validator: error:") and "validator-absent" in error


def test_a_node_whose_validator_key_is_in_the_hsm_commits_blocks(
    tmp_path: Path, softhsm_token, hsm_worker
) -> None:
    home = single_node_home(tmp_path / "net")
    signer = HsmSigner.generate(hsm_worker, "validator-node")
    replace_validator_keys([home], [signer.public_key])
    config = configure_home(
        home,
        records={"kek_backend": "hsm", "hsm_kek_label_prefix": "kek-node",
                 **hsm_settings(softhsm_token)},
        keys={"backend": "hsm", "hsm_validator_key_label": "validator-node"},
    )
    config.validator_key_path.unlink()  # nothing to fall back to: the HSM key or nothing
    seal_organization_key(config, hsm_worker)

    async def scenario() -> int:
        node = Node.open(home)
        assert node.validator_key.public_key == signer.public_key
        running = asyncio.create_task(node.run())
        try:
            async with asyncio.timeout(30):
                while node.chain.height < 3:
                    await asyncio.sleep(0.05)
            return node.chain.height
        finally:
            node.request_stop()
            await running

    assert run(scenario()) >= 3
