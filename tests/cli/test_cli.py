"""The `emrchain` command: homes it creates, one-line errors, exit statuses, the registry."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain import cli
from emrchain.cli import arguments as argument_types
from emrchain.cli import registry as command_registry
from emrchain.cli.main import load_commands
from emrchain.config import homes as homes_module
from emrchain.config import load_config_and_genesis, load_genesis, load_node_config
from emrchain.keystore import load_key_file

REPO = Path(__file__).resolve().parents[2]
BUILT_IN = ["init", "testnet", "show-node-id", "show-validator", "unsafe-reset-all"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `emrchain argv` in-process: (exit status, stdout, stderr)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse exits for usage errors and --help
        status = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(err: str, command: str) -> None:
    assert err.startswith(f"emrchain {command}: error: ") or err.startswith("emrchain: error: ")
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its content (None for directories)."""
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
    }


# ---- subprocess: what a user's shell sees --------------------------------------------------


def subprocess_run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = subprocess_run("--help")
    assert result.returncode == 0
    for name in BUILT_IN:
        assert name in result.stdout


def test_usage_error_exits_2_with_one_line_and_changes_nothing(tmp_path: Path) -> None:
    result = subprocess_run("testnet", "--validators", "0", "--output", str(tmp_path / "net"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "testnet")
    assert "argument --validators: must be an integer within 1..150, got '0'" in result.stderr
    assert not (tmp_path / "net").exists()


def test_runtime_error_exits_1_with_one_line(tmp_path: Path) -> None:
    result = subprocess_run("show-node-id", "--home", str(tmp_path))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "show-node-id")
    assert f"{tmp_path}/config/node.toml: file not found" in result.stderr


# ---- init ----------------------------------------------------------------------------------


def test_init_creates_a_loadable_single_validator_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    status, out, err = run(
        capsys, "init", "--home", str(home), "--moniker", "hospital-a", "--chain-id", "emr-1"
    )
    assert (status, err) == (0, "")
    config, genesis = load_config_and_genesis(home)
    validator = load_key_file(config.validator_key_path)
    node = load_key_file(config.node_key_path)
    assert config.node.moniker == "hospital-a" and genesis.chain_id == "emr-1"
    assert [(v.name, v.public_key, v.node_key) for v in genesis.validators] == [
        ("hospital-a", validator.public_key, node.public_key)
    ]
    assert genesis.genesis_hash.hex() in out
    for path in (config.validator_key_path, config.node_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (home, home / "config", config.data_path):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(entry.name for entry in home.iterdir()) == ["config", "data"]

    assert (
        run(capsys, "show-validator", "--home", str(home))[1] == validator.public_key.hex() + "\n"
    )
    assert run(capsys, "show-node-id", "--home", str(home))[1] == node.public_key.hex() + "\n"


def test_init_refuses_an_existing_home_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert run(capsys, "init", "--home", str(home))[0] == 0
    (home / "data" / "blocks.db").write_text("chain data")
    before = snapshot(home)

    status, _, err = run(capsys, "init", "--home", str(home))
    assert status == 1
    assert_one_line_error(err, "init")
    assert "already an emrchain home" in err and "--force" in err
    assert snapshot(home) == before

    old_key = load_key_file(home / "config/validator_key.json").public_key
    assert run(capsys, "init", "--home", str(home), "--force", "--chain-id", "other")[0] == 0
    assert load_key_file(home / "config/validator_key.json").public_key != old_key
    assert list((home / "data").iterdir()) == []
    assert load_genesis(home / "config/genesis.json").chain_id == "other"
    assert sorted(entry.name for entry in home.iterdir()) == ["config", "data"]


def test_init_force_never_deletes_in_a_directory_that_is_not_a_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "precious.txt").write_text("not ours")
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "init", "--home", str(tmp_path), "--force")
    assert status == 1 and "is not an emrchain home" in err
    assert snapshot(tmp_path) == before


def test_init_into_a_directory_with_unrelated_files_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    assert run(capsys, "init", "--home", str(tmp_path))[0] == 0
    assert (tmp_path / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--chain-id", "Bad Chain"], "argument --chain-id: chain id must be 1..50 characters"),
        (["--moniker", "a b"], "argument --moniker: must be 1..64 characters"),
        (["--home", ""], "argument --home: must not be empty"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_init_usage_errors_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    home = tmp_path / "home"
    status, _, err = run(capsys, "init", "--home", str(home), *argv)
    assert status == 2
    assert_one_line_error(err, "init")
    assert expected in err
    assert not home.exists()


def test_failed_forced_init_restores_the_old_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assert run(capsys, "init", "--home", str(home))[0] == 0
    before = snapshot(home)
    calls = []

    def failing_write(path: Path, signer: object) -> None:
        calls.append(path)
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(homes_module, "write_key_file", failing_write)
    status, _, err = run(capsys, "init", "--home", str(home), "--force")
    assert calls and status == 1
    assert_one_line_error(err, "init")
    assert "No space left on device" in err
    assert snapshot(home) == before  # no staging directory left, old keys in place


def test_failure_while_moving_the_new_home_in_restores_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assert run(capsys, "init", "--home", str(home))[0] == 0
    before = snapshot(home)
    real_rename = Path.rename
    failures = []

    def rename(self: Path, target: Path) -> Path:
        # Fail once, on the last move of a forced init (staged data into place).
        if Path(target) == home / "data" and not failures:
            failures.append(self)
            raise OSError(5, "Input/output error", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    status, _, err = run(capsys, "init", "--home", str(home), "--force")
    assert failures and status == 1 and "Input/output error" in err
    monkeypatch.undo()
    assert snapshot(home) == before


# ---- testnet -------------------------------------------------------------------------------


def test_testnet_homes_share_genesis_and_link_their_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "net"
    status, out, err = run(
        capsys, "testnet", "--validators", "4", "--output", str(output), "--chain-id", "emr-net"
    )
    assert (status, err) == (0, "")
    homes = [output / f"node{index}" for index in range(4)]
    assert sorted(output.iterdir()) == homes
    loaded = [load_config_and_genesis(home) for home in homes]
    configs = [config for config, _ in loaded]

    genesis_bytes = {(home / "config/genesis.json").read_bytes() for home in homes}
    assert len(genesis_bytes) == 1
    genesis = loaded[0][1]
    assert {g.genesis_hash for _, g in loaded} == {genesis.genesis_hash}
    assert genesis.genesis_hash.hex() in out and genesis.chain_id == "emr-net"

    validator_keys = [load_key_file(c.validator_key_path).public_key for c in configs]
    node_keys = [load_key_file(c.node_key_path).public_key for c in configs]
    assert len(set(validator_keys) | set(node_keys)) == 8
    by_name = {v.name: v for v in genesis.validators}
    for index, config in enumerate(configs):
        entry = by_name[config.node.moniker]
        assert config.node.moniker == f"node{index}"
        assert (entry.public_key, entry.node_key, entry.power) == (
            validator_keys[index],
            node_keys[index],
            10,
        )

    ports = [c.p2p.listen_address.port for c in configs] + [
        c.rpc.listen_address.port for c in configs
    ]
    assert len(set(ports)) == 8
    assert {c.p2p.listen_address.host for c in configs} == {"127.0.0.1"}
    for index, config in enumerate(configs):
        expected = {
            (node_keys[other], configs[other].p2p.listen_address)
            for other in range(4)
            if other != index
        }
        peers = {(peer.node_id, peer.address) for peer in config.p2p.persistent_peers}
        assert peers == expected
        assert len(config.p2p.persistent_peers) == 3


def test_testnet_base_port_lays_ports_out_consecutively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "net"
    assert (
        run(
            capsys,
            "testnet",
            "--validators",
            "3",
            "--output",
            str(output),
            "--base-port",
            "40000",
            "--host",
            "127.0.0.2",
        )[0]
        == 0
    )
    for index in range(3):
        config = load_node_config(output / f"node{index}")
        assert str(config.p2p.listen_address) == f"127.0.0.2:{40000 + 3 * index}"
        assert str(config.rpc.listen_address) == f"127.0.0.2:{40001 + 3 * index}"
        assert config.instrumentation.enabled
        assert str(config.instrumentation.listen_address) == f"127.0.0.2:{40002 + 3 * index}"


def test_testnet_refuses_a_non_empty_output_and_leaves_no_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "net"
    output.mkdir()
    (output / "something").write_text("x")
    before = snapshot(tmp_path)
    status, _, err = run(capsys, "testnet", "--validators", "2", "--output", str(output))
    assert status == 1
    assert_one_line_error(err, "testnet")
    assert "exists and is not an empty directory" in err
    assert snapshot(tmp_path) == before


def test_testnet_into_an_empty_directory_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "testnet", "--validators", "1", "--output", str(tmp_path))[0] == 0
    assert [entry.name for entry in tmp_path.iterdir()] == ["node0"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--validators", "151"], "argument --validators: must be an integer within 1..150"),
        (
            ["--validators", "2", "--base-port", "65533"],
            "argument --base-port: 65533 leaves no room for 4 consecutive ports",
        ),
        (["--validators", "2", "--base-port", "-1"], "argument --base-port"),
        (["--validators", "2", "--host", "0.0.0.0"], "argument --host: 0.0.0.0 cannot be dialled"),
        (["--validators", "2", "--host", "my host"], "argument --host: must be an IP address"),
        (["--validators", "2", "--chain-id", "x" * 51], "argument --chain-id"),
        ([], "the following arguments are required: --validators"),
    ],
)
def test_testnet_usage_errors_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    status, _, err = run(capsys, "testnet", "--output", str(tmp_path / "net"), *argv)
    assert status == 2
    assert_one_line_error(err, "testnet")
    assert expected in err
    assert list(tmp_path.iterdir()) == []


# ---- show-*, unsafe-reset-all ------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "home"
    assert run(capsys, "init", "--home", str(path))[0] == 0
    return path


def test_show_commands_refuse_a_readable_key(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command, key in (("show-node-id", "node_key"), ("show-validator", "validator_key")):
        path = home / "config" / f"{key}.json"
        path.chmod(0o644)
        status, out, err = run(capsys, command, "--home", str(home))
        assert (status, out) == (1, "")
        assert_one_line_error(err, command)
        assert f"{path}: key file is accessible by group or others (mode 0644)" in err


def test_bad_config_is_reported_with_file_and_key(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = home / "config/node.toml"
    config_path.write_text(config_path.read_text().replace("max_round = 1000", "max_round = 0"))
    status, _, err = run(capsys, "show-validator", "--home", str(home))
    assert status == 1
    assert_one_line_error(err, "show-validator")
    assert f"{config_path}: [consensus] max_round: must be within 1..2147483647, got 0" in err


def test_unsafe_reset_all_empties_data_and_keeps_config_and_keys(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "data" / "state").mkdir()
    (home / "data" / "state" / "signing.db").write_text("last signed step")
    (home / "data" / "blocks.db").write_text("blocks")
    config_before = snapshot(home / "config")
    data_before = snapshot(home / "data")

    status, _, err = run(capsys, "unsafe-reset-all", "--home", str(home))
    assert status == 2
    assert_one_line_error(err, "unsafe-reset-all")
    assert "without --yes" in err
    assert snapshot(home / "data") == data_before

    status, _, err = run(capsys, "unsafe-reset-all", "--home", str(home), "--yes")
    assert (status, err) == (0, "")
    assert list((home / "data").iterdir()) == []
    assert snapshot(home / "config") == config_before


def test_unsafe_reset_all_refuses_a_broken_config(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "data" / "blocks.db").write_text("blocks")
    with (home / "config/node.toml").open("a") as handle:
        handle.write("\n[storag]\nbackend = 'leveldb'\n")
    status, _, err = run(capsys, "unsafe-reset-all", "--home", str(home), "--yes")
    assert status == 1
    assert "[storag]: unknown section; did you mean 'storage'?" in err
    assert (home / "data" / "blocks.db").exists()


# ---- the registry --------------------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[None]:
    load_commands()
    saved = dict(command_registry._COMMANDS)
    yield
    command_registry._COMMANDS.clear()
    command_registry._COMMANDS.update(saved)


def test_registered_command_runs_with_its_arguments(
    registry: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=argument_types.bounded_integer(1, 3), required=True)

    @command_registry.command("echo-count", "print the count", arguments=arguments)
    def echo_count(args: argparse.Namespace) -> int:
        if args.count == 3:
            raise command_registry.CommandError("three is too many at runtime")
        print(args.count)
        return 7

    assert run(capsys, "echo-count", "--count", "2") == (7, "2\n", "")
    status, _, err = run(capsys, "echo-count", "--count", "3")
    assert status == 1 and err == "emrchain echo-count: error: three is too many at runtime\n"
    status, _, err = run(capsys, "echo-count", "--count", "9")
    assert status == 2 and "argument --count: must be an integer within 1..3" in err
    assert "echo-count" in run(capsys, "--help")[1]


def test_duplicate_command_names_are_refused(registry: None) -> None:
    with pytest.raises(ValueError, match="'init' is already registered"):
        command_registry.register_command(command_registry.Command("init", "again", lambda args: 0))


def test_bugs_keep_their_traceback(registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    @command_registry.command("buggy", "raises an unexpected exception")
    def buggy(args: argparse.Namespace) -> int:
        raise KeyError("internal")

    with pytest.raises(KeyError):
        cli.main(["buggy"])


def test_key_files_written_by_init_are_the_documented_format(home: Path) -> None:
    document = json.loads((home / "config/validator_key.json").read_text())
    assert set(document) == {"type", "seed", "public_key"} and document["type"] == "ed25519"
    assert os.stat(home / "config/validator_key.json").st_uid == os.getuid()
