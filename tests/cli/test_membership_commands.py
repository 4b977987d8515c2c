"""`emrchain join` and `approve-validator`'s argument checks, in-process (the commands' effect on
a running chain is tested on real processes in `tests/membership/`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrchain.config import load_config_and_genesis, load_node_config
from emrchain.config.homes import create_testnet
from emrchain.keystore import load_key_file, node_id
from tests.cli.test_cli import assert_one_line_error, run

PEER_ID = "ab" * 32


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    homes, _ = create_testnet(
        tmp_path / "net", validators=1, chain_id="emrchain-join", host="127.0.0.1", base_port=0
    )
    return homes[0]


def join_arguments(home: Path, genesis_home: Path | None, *extra: str) -> list[str]:
    genesis = load_node_config(genesis_home).genesis_path if genesis_home else "missing.json"
    return [
        "join",
        f"--home={home}",
        f"--genesis={genesis}",
        f"--peer={PEER_ID}@127.0.0.1:26656",
        "--p2p-address=127.0.0.1:36656",
        "--rpc-address=127.0.0.1:36657",
        *extra,
    ]


def test_join_creates_a_home_on_the_chains_genesis_with_fresh_keys(
    chain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hospital-5"
    status, out, _ = run(capsys, *join_arguments(home, chain, "--organization-id=hospital-5"))
    assert status == 0
    config, genesis = load_config_and_genesis(home)
    _, chain_genesis = load_config_and_genesis(chain)
    assert genesis == chain_genesis
    assert [str(peer) for peer in config.p2p.persistent_peers] == [f"{PEER_ID}@127.0.0.1:26656"]
    assert config.node.organization_id == "hospital-5"
    validator = load_key_file(config.validator_key_path).public_key
    assert validator not in genesis.validator_set()  # a full node until approved
    node = node_id(load_key_file(config.node_key_path).public_key)
    assert f"--validator-key {validator.hex()} --node-key {node} --address 127.0.0.1:36656" in out
    assert f"register-node --key <admin key file> --rpc <url> --node-home {home} " in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--p2p-address=0.0.0.0:36656"], "--advertise"),
        (["--advertise=nohost"], "host:port"),
        (["--organization-id=Bad Org"], "--organization-id"),
    ],
)
def test_join_usage_errors_create_nothing(
    chain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    home = tmp_path / "new"
    status, _, err = run(capsys, *join_arguments(home, chain, *extra))
    assert status == 2 and message in err
    assert_one_line_error(err, "join")
    assert not home.exists()


def test_join_refuses_a_missing_genesis_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "new"
    status, _, err = run(capsys, *join_arguments(home, None))
    assert status == 1
    assert_one_line_error(err, "join")
    assert not home.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--power=10", "--epoch=1"],  # an addition without its node key
        ["--power=0", "--epoch=1", f"--node-key={PEER_ID}"],  # a removal with one
    ],
)
def test_approve_validator_argument_rules(
    chain: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    status, _, err = run(
        capsys, "approve-validator", f"--home={chain}", f"--validator-key={PEER_ID}", *extra
    )
    assert status == 2
    assert_one_line_error(err, "approve-validator")


def test_register_node_refuses_a_home_without_a_node_key_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The node's key signs the proof of possession; without it nothing is sent.
    status, _, err = run(
        capsys,
        "register-node",
        f"--key={tmp_path / 'admin.json'}",
        "--rpc=http://127.0.0.1:9",
        f"--node-home={tmp_path / 'no-such-home'}",
    )
    assert status == 1 and "node key" in err
    assert_one_line_error(err, "register-node")
