"""Every node.toml the loader accepts builds every subsystem config the node builds at start.

The settings are declared once (`emrchain/config/node.py`); the subsystems read their defaults
and bounds from there (`emrchain/node/wiring.py` builds them). These tests draw files across
every declared range, ends included, and across the rules between settings, and check that no
accepted file is refused by a subsystem. A subsystem with a narrower range than its declaration
makes them fail (`test_a_subsystem_narrower_than_its_declaration_is_caught`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from emrchain.config import ConfigError, NodeConfig
from emrchain.config.node import SECTIONS, parse_node_config
from emrchain.config.settings import Boolean, Choice, Integer, Name
from emrchain.consensus.config import ConsensusConfig
from emrchain.consensus.state_machine import TendermintCore
from emrchain.hsm.node_keys import hsm_config_of
from emrchain.mempool import MempoolConfig
from emrchain.node import messages, wiring
from emrchain.node.consensus_driver import DriverLimits
from emrchain.rpc.auth import ReplayCache, ReplayLimits
from emrchain.rpc.stream import StreamLimits

HOME = Path("/srv/emrchain")
SOURCE = "<drawn>"

Check = Callable[[NodeConfig], object]


def build_every_config(config: NodeConfig) -> object:
    return [wiring.build(built, config) for built in wiring.SECTIONS_OF]


def build_consensus_core(config: NodeConfig) -> object:
    return TendermintCore(wiring.build(ConsensusConfig, config), b"\x01" * 32)


def build_replay_cache(config: NodeConfig) -> object:
    records = config.records
    limits = ReplayLimits(
        records.max_clock_skew_ms,
        records.replay_cache_entries,
        records.replay_cache_entries_per_member,
    )
    return ReplayCache(limits, lambda: 0)


def build_stream_limits(config: NodeConfig) -> object:
    rpc = config.rpc
    return (
        StreamLimits.of(rpc, rpc.max_stream_subscribers_per_address).slots(),
        StreamLimits.of(rpc, rpc.max_stream_subscribers_per_member).slots(),
    )


SUBSYSTEMS: tuple[Check, ...] = (
    build_every_config,
    lambda config: wiring.build(MempoolConfig, config).validate(),
    lambda config: wiring.p2p_config(config).validate(),
    build_consensus_core,
    hsm_config_of,
    build_replay_cache,
    build_stream_limits,
    lambda config: config.limits.validate_basic(),
)
"""What the node builds from its config at start, without opening files or sockets."""

INTEGERS = [
    (section.name, key, spec.kind)
    for section in SECTIONS
    for key, spec in section.settings.items()
    if isinstance(spec.kind, Integer)
]
BOOLEANS = [
    (section.name, key)
    for section in SECTIONS
    for key, spec in section.settings.items()
    if isinstance(spec.kind, Boolean)
]
WORDS = [
    (section.name, key, spec.kind)
    for section in SECTIONS
    for key, spec in section.settings.items()
    if isinstance(spec.kind, Choice | Name)
]


def word_values(kind: Choice | Name) -> st.SearchStrategy[str]:
    if isinstance(kind, Choice):
        return st.sampled_from(kind.choices)
    return st.from_regex(kind.pattern, fullmatch=True)


def integer_values(kind: Integer, drawn: Sequence[int]) -> st.SearchStrategy[int]:
    """Mostly the ends of the range and values already drawn for other keys (so the two sides
    of a rule between settings often meet exactly), else anything in the range."""
    ends = [kind.minimum, kind.minimum + 1, kind.maximum - 1, kind.maximum]
    shared = [value for value in drawn if kind.minimum <= value <= kind.maximum]
    choices = [value for value in ends + shared if kind.minimum <= value <= kind.maximum]
    return st.one_of(st.sampled_from(choices), st.integers(kind.minimum, kind.maximum))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, dict[str, object]]:
    """A node.toml as parsed TOML: a handful of integer, boolean and word keys
    set, the rest default."""
    document: dict[str, dict[str, object]] = {}
    drawn: list[int] = []
    for section, key, kind in draw(st.lists(st.sampled_from(INTEGERS), max_size=14, unique=True)):
        value = draw(integer_values(kind, drawn))
        drawn.append(value)
        document.setdefault(section, {})[key] = value
    for section, key in draw(st.lists(st.sampled_from(BOOLEANS), max_size=3, unique=True)):
        document.setdefault(section, {})[key] = draw(st.booleans())
    for section, key, kind in draw(
        st.lists(st.sampled_from(WORDS), max_size=3, unique_by=lambda item: item[:2])
    ):
        document.setdefault(section, {})[key] = draw(word_values(kind))
    return document


def accepted(document: dict[str, dict[str, object]]) -> NodeConfig | None:
    try:
        return parse_node_config(document, home=HOME, source=SOURCE)
    except ConfigError:
        return None


def check_every_subsystem(document: dict[str, dict[str, object]], checks: Sequence[Check]) -> None:
    config = accepted(document)
    assume(config is not None)
    assert config is not None
    for check in checks:
        check(config)


PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


END_DOCUMENTS = [
    {section: {key: end}} for section, key, kind in INTEGERS for end in (kind.minimum, kind.maximum)
]
"""Each integer key alone at each end of its range; those the rules between settings refuse
with the other keys at their defaults are skipped like any refused file."""


def property_over(checks: Sequence[Check]) -> Callable[[], None]:
    """The property for `checks`: every end of every range first, then drawn files."""

    @PROPERTY_SETTINGS
    @given(documents())
    def every_accepted_file_builds(document: dict[str, dict[str, object]]) -> None:
        check_every_subsystem(document, checks)

    for document in END_DOCUMENTS:
        every_accepted_file_builds = example(document)(every_accepted_file_builds)
    return every_accepted_file_builds


test_every_accepted_file_builds_every_subsystem = property_over(SUBSYSTEMS)


def test_the_defaults_build_every_subsystem() -> None:
    config = parse_node_config({}, home=HOME, source=SOURCE)
    for check in SUBSYSTEMS:
        check(config)


def test_the_driver_and_runtime_take_every_field_from_the_config() -> None:
    """DriverLimits keeps defaults for tests; the node's build must never fall back on them."""
    document = {
        "consensus": {
            "proposal_rounds_ahead": 3,
            "max_future_bytes_per_peer": 53,
            "max_evidence_kept": 5,
            "max_events_per_dispatch": 7,
            "max_own_messages": 11,
            "future_heights": 13,
            "max_future_messages": 17,
            "max_wal_entries_per_height": 47,
            "timeout_commit_ms": 19,
            "timeout_commit_reads_ms": 23,
            "create_empty_blocks": False,
            "status_interval_ms": 29,
        },
        "mempool": {
            "gossip_interval_ms": 31,
            "max_gossip_txs": 37,
            "max_gossip_bytes": 41 * 1024,
            "max_queued_gossip_batches": 43,
            "relay_peer_txs": True,
        },
    }
    config = parse_node_config(document, home=HOME, source=SOURCE)
    limits = wiring.build(DriverLimits, config)
    intervals = wiring.build(wiring.RuntimeIntervals, config)
    for key, value in document["consensus"].items():
        built = limits if hasattr(DriverLimits, key) else intervals
        assert getattr(built, key) == value, key
    for key, value in document["mempool"].items():
        assert getattr(intervals, key) == value, key


def narrower_mempool(config: NodeConfig) -> None:
    """A broken variant: a mempool that refuses the top quarter of the declared max_bytes range
    (as MempoolConfig did before it read its bounds from the declaration)."""
    built = wiring.build(MempoolConfig, config)
    built.validate()
    if built.max_bytes > 3 << 32:
        raise ValueError(f"max_bytes must be at most {3 << 32}, got {built.max_bytes}")


def narrower_p2p(config: NodeConfig) -> None:
    """A broken variant: a P2P layer that refuses ping intervals the declaration allows."""
    built = wiring.p2p_config(config)
    built.validate()
    if built.ping_interval_ms < 20:
        raise ValueError(f"ping_interval_ms must be at least 20, got {built.ping_interval_ms}")


@pytest.mark.parametrize("broken", [narrower_mempool, narrower_p2p])
def test_a_subsystem_narrower_than_its_declaration_is_caught(broken: Check) -> None:
    with pytest.raises(ValueError, match="must be at"):
        property_over((*SUBSYSTEMS, broken))()


def test_a_subsystem_field_without_a_setting_or_default_is_refused() -> None:
    @dataclass(frozen=True)
    class Undeclared:
        timeout_commit_ms: int
        not_a_setting_ms: int

    config = parse_node_config({}, home=HOME, source=SOURCE)
    with pytest.raises(TypeError, match="not_a_setting_ms is not a declared setting"):
        wiring.from_sections(Undeclared, config.consensus)


def test_the_largest_gossip_message_the_rule_allows_fits_in_a_frame() -> None:
    """The loader's gossip rule, checked against the real encoding and the P2P payload bound."""
    frame = 4_096
    document = {
        "p2p": {"max_frame_bytes": frame},
        "limits": {"max_tx_bytes": 200, "max_block_bytes": 1_024},
        "mempool": {"max_gossip_txs": 7, "max_gossip_bytes": frame - 4 * 7 - 64},
    }
    config = parse_node_config(document, home=HOME, source=SOURCE)
    mempool = config.mempool
    sizes = [mempool.max_gossip_bytes // mempool.max_gossip_txs] * mempool.max_gossip_txs
    sizes[0] += mempool.max_gossip_bytes - sum(sizes)
    _, payload = messages.encode(messages.TxsMessage(tuple(bytes(size) for size in sizes)))
    assert len(payload) <= wiring.p2p_config(config).max_payload_bytes
    document["mempool"]["max_gossip_bytes"] += 1
    assert accepted(document) is None
