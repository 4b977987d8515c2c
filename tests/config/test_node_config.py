"""node.toml: defaults, strict refusal of every bad key/value naming file and key, rendering."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from emrchain.config import ConfigError, NodeConfig, load_node_config, render_node_config
from emrchain.config.address import Address
from emrchain.config.node import (
    LIMITS_SETTINGS,
    NODE_CONFIG_FILE,
    SECTIONS,
    SECTIONS_BY_NAME,
    _parse_section,
    parse_node_config_text,
)
from emrchain.config.reference import with_current_tables
from emrchain.config.settings import Integer
from emrchain.types.limits import DEFAULT_LIMITS, Limits

REPO = Path(__file__).resolve().parents[2]
HOME = Path("/srv/emrchain")
SOURCE = "/srv/emrchain/config/node.toml"

ALL_KEYS = [(section.name, key) for section in SECTIONS for key in section.settings]
INTEGER_KEYS = [
    (section.name, key, spec.kind)
    for section in SECTIONS
    for key, spec in section.settings.items()
    if isinstance(spec.kind, Integer)
]


def parse(text: str) -> NodeConfig:
    return parse_node_config_text(text, home=HOME, source=SOURCE)


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(SOURCE + ": "), message
    assert "\n" not in message
    return message


def test_empty_file_gives_all_defaults(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / NODE_CONFIG_FILE).write_text("")
    config = load_node_config(tmp_path)
    assert config == NodeConfig(home=tmp_path)
    assert config.limits == DEFAULT_LIMITS
    assert config.p2p.listen_address == Address("0.0.0.0", 26656)
    assert config.rpc.listen_address == Address("127.0.0.1", 26657)
    assert config.keys.backend == "file" and config.storage.backend == "leveldb"
    assert config.consensus.create_empty_blocks is True
    assert config.data_path == tmp_path / "data"
    assert config.validator_key_path == tmp_path / "config/validator_key.json"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config/node\.toml: file not found"):
        load_node_config(tmp_path)


def test_invalid_toml_names_the_file() -> None:
    assert "invalid TOML" in refused("[p2p\nlisten_address = 1")


def test_render_round_trips_non_default_values() -> None:
    text = """
[node]
moniker = "hospital-a"
data_dir = "chain/data"
[p2p]
listen_address = "[::1]:7000"
persistent_peers = ["%s@peer.example.org:7001"]
handshake_timeout_ms = 100
[consensus]
create_empty_blocks = false
timeout_commit_ms = 0
[limits]
max_tx_bytes = 2000
max_evidence_per_block = 0
[log]
level = "debug"
""" % ("ab" * 32)
    config = parse(text)
    assert config.p2p.persistent_peers[0].node_id == bytes.fromhex("ab" * 32)
    assert str(config.p2p.listen_address) == "[::1]:7000"
    assert config.limits == dataclasses.replace(
        DEFAULT_LIMITS, max_tx_bytes=2000, max_evidence_per_block=0
    )
    for comments in (True, False):
        assert parse(render_node_config(config, comments=comments)) == config


@pytest.mark.parametrize(("section", "key", "kind"), INTEGER_KEYS)
def test_every_integer_key_refuses_values_outside_its_range(
    section: str, key: str, kind: Integer
) -> None:
    for value in (kind.minimum - 1, kind.maximum + 1):
        message = refused(f"[{section}]\n{key} = {value}")
        assert f"[{section}] {key}: must be within {kind.minimum}..{kind.maximum}" in message


@pytest.mark.parametrize(("section", "key", "kind"), INTEGER_KEYS)
def test_every_integer_key_accepts_its_bounds(section: str, key: str, kind: Integer) -> None:
    # Section parsing alone: a bound may contradict another key's default (cross-key rules).
    spec = SECTIONS_BY_NAME[section]
    for value in (kind.minimum, kind.maximum):
        assert getattr(_parse_section(spec, {key: value}, SOURCE), key) == value


@pytest.mark.parametrize(("section", "key"), ALL_KEYS)
def test_every_key_refuses_a_wrong_type(section: str, key: str) -> None:
    default = getattr(SECTIONS_BY_NAME[section].factory(), key)
    # A float is the wrong type for every key; a table also for every key.
    for wrong in ("1.5", "{ a = 1 }"):
        message = refused(f"[{section}]\n{key} = {wrong}")
        assert f"[{section}] {key}: must be" in message
    if not isinstance(default, bool):
        assert "must be" in refused(f"[{section}]\n{key} = true")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[p2p]\nhandshake_timeout = 1",
            "[p2p] handshake_timeout: unknown key; did you mean 'handshake_timeout_ms'?",
        ),
        ("[consensus]\ntimeout_propse_ms = 1", "did you mean 'timeout_propose_ms'?"),
        ("[consensus]\nstatus_intervall_ms = 1", "did you mean 'status_interval_ms'?"),
        (
            "[p2p]\nrelay_peer_txs = true",
            "[p2p] relay_peer_txs: unknown key; it belongs in [mempool]",
        ),
        ("[mempol]\nmax_txs = 1", "[mempol]: unknown section; did you mean 'mempool'?"),
        ("[node]\nmax_txs = 5", "[node] max_txs: unknown key; it belongs in [mempool]"),
        ("moniker = 'a'", "moniker: keys must be inside a section; it belongs in [node]"),
        ("[blobs]\nbackend = 'local'", "[blobs]: unknown section"),
        ("p2p = 5", "[p2p]: must be a table"),
    ],
)
def test_unknown_names_are_refused_with_a_suggestion(text: str, expected: str) -> None:
    assert expected in refused(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[keys]\nbackend = "vault"', '[keys] backend: must be one of "file", "hsm"'),
        ('[storage]\nbackend = "rocksdb"', '[storage] backend: must be one of "leveldb"'),
        ('[storage]\ncompression = "zstd"', '[storage] compression: must be one of "none"'),
        ("[storage]\nwrite_buffer_bytes = 1000", "[storage] write_buffer_bytes: must be"),
        ('[log]\nlevel = "INFO"', "[log] level: must be one of"),
        ('[node]\nmoniker = ""', "[node] moniker: must be 1..64 characters"),
        ('[node]\nmoniker = "a b"', "[node] moniker: must be"),
        ('[node]\ndata_dir = "/var/lib/emr"', "[node] data_dir: must be a relative path"),
        ('[node]\ndata_dir = "../elsewhere"', "[node] data_dir: must be a relative path"),
        ('[node]\ndata_dir = "."', "[node] data_dir: must be a relative path"),
        ('[node]\ndata_dir = "config"', "[node] data_dir: config would contain the config file"),
        (
            '[keys]\nnode_key_file = "data/node_key.json"',
            "[node] data_dir: data would contain the [keys] node_key_file",
        ),
        (
            '[keys]\nnode_key_file = "config/validator_key.json"',
            "[keys] node_key_file: must differ from [keys] validator_key_file",
        ),
        (
            '[p2p]\nlisten_address = "localhost"',
            "[p2p] listen_address: 'localhost' is not of the form host:port",
        ),
        ('[p2p]\nlisten_address = "1.2.3.4:0"', "[p2p] listen_address: port '0' is not"),
        ('[p2p]\nlisten_address = "1.2.3.4:70000"', "[p2p] listen_address: port"),
        ('[p2p]\nlisten_address = "::1:80"', "write an IPv6 host in brackets"),
        ('[p2p]\nlisten_address = "bad_host!:80"', "neither an IP address nor a valid host"),
        (
            '[rpc]\nlisten_address = "0.0.0.0:26656"\n[p2p]\nlisten_address = "0.0.0.0:26656"',
            "[rpc] listen_address: must differ from [p2p] listen_address",
        ),
        ('[p2p]\npersistent_peers = "x"', "[p2p] persistent_peers: must be an array"),
        (
            '[p2p]\npersistent_peers = ["1.2.3.4:5"]',
            "[p2p] persistent_peers: entry 0: '1.2.3.4:5'"
            " is not of the form <node_id_hex>@host:port",
        ),
        ('[p2p]\npersistent_peers = ["abc@1.2.3.4:5"]', "entry 0: node id 'abc' is not 64 hex"),
        (f'[p2p]\npersistent_peers = ["{"00" * 32}@1.2.3.4:5"]', "must not be all zeros"),
        (
            f'[p2p]\npersistent_peers = ["{"ab" * 32}@a:1", "{"ab" * 32}@b:2"]',
            "entry 1: node id " + "ab" * 32 + " is listed twice",
        ),
        ("[p2p]\npersistent_peers = [1]", "entry 0 must be a string"),
        (
            "[p2p]\nreconnect_initial_ms = 5000\nreconnect_max_ms = 1000",
            "[p2p] reconnect_max_ms: must be at least [p2p] reconnect_initial_ms (5000)",
        ),
        (
            "[p2p]\nmax_frame_bytes = 1000000",
            "[p2p] max_frame_bytes: must be at least [limits] max_block_bytes (16777216)",
        ),
        (
            "[rpc]\nmax_body_bytes = 2000\n[limits]\nmax_tx_bytes = 3000",
            "[rpc] max_body_bytes: must be at least [limits] max_tx_bytes (3000)",
        ),
        (
            "[rpc]\nmax_buffered_body_bytes = 1048576",
            "[rpc] max_buffered_body_bytes: must be at least [rpc] max_body_bytes and "
            "[records] max_record_bytes (67108864)",
        ),
        (
            "[rpc]\nmax_connections = 10\nmax_connections_per_address = 11",
            "[rpc] max_connections_per_address: must be at most [rpc] max_connections (10)",
        ),
        (
            "[rpc]\nmax_stream_subscribers = 2\nmax_stream_subscribers_per_member = 1",
            "[rpc] max_stream_subscribers_per_address: must be at most "
            "[rpc] max_stream_subscribers (2), got 4",
        ),
        (
            "[rpc]\nmax_stream_subscribers = 4\nmax_stream_subscribers_per_member = 5",
            "[rpc] max_stream_subscribers_per_member: must be at most "
            "[rpc] max_stream_subscribers (4), got 5",
        ),
        (
            "[records]\nreplay_cache_entries = 1000\nreplay_cache_entries_per_member = 1001",
            "[records] replay_cache_entries_per_member: must be at most "
            "[records] replay_cache_entries (1000)",
        ),
        (
            '[rpc]\ntls_certificate_file = "config/rpc.crt"',
            "[rpc] tls_key_file: tls_certificate_file and tls_key_file are set together",
        ),
        (
            '[rpc]\ntls_client_ca_file = "config/ca.crt"',
            "[rpc] tls_client_ca_file: client certificates need TLS",
        ),
        ('[rpc]\ntls_key_file = "/etc/key.pem"', "must be a relative path inside the home"),
        (
            "[mempool]\nmax_bytes = 2000\n[limits]\nmax_tx_bytes = 3000",
            "[mempool] max_bytes: must be at least [limits] max_tx_bytes (3000)",
        ),
        (
            "[mempool]\nmax_txs = 10\nmax_batch_txs = 11\nmax_txs_per_sender = 5",
            "[mempool] max_batch_txs: must be at most [mempool] max_txs (10)",
        ),
        (
            "[mempool]\nmax_txs = 10\nmax_batch_txs = 10\nmax_txs_per_sender = 11",
            "[mempool] max_txs_per_sender: must be at most [mempool] max_txs (10)",
        ),
        (
            "[limits]\nmax_tx_bytes = 5000\nmax_block_bytes = 4999",
            "[limits] max_block_bytes: must be at least [limits] max_tx_bytes (5000)",
        ),
        (
            "[p2p]\nping_interval_ms = 1000\nidle_timeout_ms = 1999",
            "[p2p] idle_timeout_ms: must be at least twice [p2p] ping_interval_ms (1000)",
        ),
        (
            "[p2p]\nmax_frame_bytes = 67108865",
            "[p2p] max_frame_bytes: must be within 1024..67108864",
        ),
        (
            "[mempool]\nmax_bytes = 17179869185",
            "[mempool] max_bytes: must be within 109..17179869184",
        ),
        ("[mempool]\nmax_gossip_txs = 5001", "[mempool] max_gossip_txs: must be within 1..5000"),
        (
            "[mempool]\nmax_gossip_bytes = 4095",
            "[mempool] max_gossip_bytes: must be at least [limits] max_tx_bytes (4096)",
        ),
        (
            "[mempool]\nmax_gossip_bytes = 33534369",  # 33554432 - 4 * 5000 - 64 + 1
            "[mempool] max_gossip_bytes: a gossip message of max_gossip_bytes (33534369)",
        ),
        (
            "[consensus]\nmax_own_messages = 2",
            "[consensus] max_own_messages: must be within 3..10000",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_ipv6_and_hostname_addresses_are_accepted() -> None:
    config = parse(
        '[p2p]\nlisten_address = "[::]:26656"\n'
        f'persistent_peers = ["{"0a" * 32}@node-1.hospital.example:26656"]'
    )
    assert config.p2p.listen_address == Address("::", 26656)
    assert config.p2p.persistent_peers[0].address.host == "node-1.hospital.example"


def test_limits_section_covers_every_limit() -> None:
    assert list(LIMITS_SETTINGS) == [item.name for item in dataclasses.fields(Limits)]
    section = next(s for s in SECTIONS if s.name == "limits")
    assert section.factory() == DEFAULT_LIMITS


def test_rendered_defaults_are_valid_toml_with_every_key() -> None:
    document = tomllib.loads(render_node_config(NodeConfig(home=HOME)))
    assert [(name, key) for name, table in document.items() for key in table] == ALL_KEYS


def test_example_file_is_the_rendered_defaults() -> None:
    example = (REPO / "configs" / "node.toml").read_text()
    assert example == render_node_config(NodeConfig(home=HOME)), (
        "configs/node.toml is stale: regenerate it with "
        "render_node_config(NodeConfig(home=Path('.')))"
    )


def test_reference_tables_are_the_declarations() -> None:
    reference = (REPO / "docs" / "spec" / "config.md").read_text()
    assert with_current_tables(reference) == reference, (
        "docs/spec/config.md is stale: run python -m emrchain.config.reference docs/spec/config.md"
    )


def test_reference_lists_every_key_once_with_default_range_and_unit() -> None:
    reference = (REPO / "docs" / "spec" / "config.md").read_text()
    for section in SECTIONS:
        for key, spec in section.settings.items():
            rows = [
                line
                for line in reference.splitlines()
                if line.startswith(f"| `{section.name}.{key}` |")
                and line.count(" | ") == 3  # a settings row, not a rule across keys
            ]
            assert len(rows) == 1, f"[{section.name}] {key}: {len(rows)} rows"
            if isinstance(spec.kind, Integer):
                kind = spec.kind
                assert f"{kind.minimum}..{kind.maximum} {kind.unit} |" in rows[0]


def test_a_stale_reference_table_is_noticed() -> None:
    reference = (REPO / "docs" / "spec" / "config.md").read_text()
    stale = reference.replace("| `1000` | Highest round", "| `10000` | Highest round")
    assert stale != reference
    assert with_current_tables(stale) == reference


def test_strings_needing_escapes_round_trip() -> None:
    awkward = 'dir "quoted"/back\u00e9/tab\tand\u007fdel/new\nline'
    config = dataclasses.replace(
        NodeConfig(home=HOME),
        node=dataclasses.replace(NodeConfig(home=HOME).node, data_dir=awkward),
    )
    text = render_node_config(config)
    assert tomllib.loads(text)["node"]["data_dir"] == awkward
    assert parse(text).node.data_dir == awkward


def test_a_gossip_message_that_just_fits_its_frame_is_accepted() -> None:
    config = parse("[mempool]\nmax_gossip_bytes = 33534368")  # 33554432 - 4 * 5000 - 64
    assert config.mempool.max_gossip_bytes == 33_534_368


def test_instrumentation_rules_across_keys() -> None:
    assert "[instrumentation] heartbeat_stale_ms: must be at least twice" in refused(
        "[instrumentation]\nheartbeat_interval_ms = 1000\nheartbeat_stale_ms = 1500"
    )
    assert "[instrumentation] listen_address: must differ from [rpc]" in refused(
        '[instrumentation]\nenabled = true\nlisten_address = "127.0.0.1:26657"'
    )
    # Disabled, its address is not bound, so it may equal another.
    loaded = parse_node_config_text(
        '[instrumentation]\nlisten_address = "127.0.0.1:26657"', home=HOME, source=SOURCE
    )
    assert loaded.instrumentation.enabled is False
