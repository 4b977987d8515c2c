"""P2PConfig validation, node addresses, the reconnect schedule and the duplicate rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emrchain.p2p import NodeAddress, P2PConfig, node_id
from emrchain.p2p.backoff import backoff_delay_ms
from emrchain.p2p.manager import prefer_new_connection

NODE_ID = "ab" * 32


def test_defaults_are_valid() -> None:
    P2PConfig().validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("listen_port", -1),
        ("listen_port", 65_536),
        ("listen_host", ""),
        ("persistent_peers", ["not a tuple"]),
        ("max_frame_bytes", 10),
        ("max_frame_bytes", 1 << 40),
        ("send_queue_max_messages", 0),
        ("receive_queue_max_messages", 0),
        ("max_read_buffer_bytes", 100),
        ("max_write_buffer_bytes", 0),
        ("max_pending_handshakes", 0),
        ("handshake_timeout_ms", 5),
        ("dial_timeout_ms", 0),
        ("reconnect_initial_ms", 0),
        ("reconnect_max_ms", 1),
        ("ping_interval_ms", 0),
        ("idle_timeout_ms", 1),
        ("close_timeout_ms", 0),
        ("send_queue_max_messages", 1.5),
        ("handshake_timeout_ms", True),
    ],
)
def test_validate_names_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        replace(P2PConfig(), **{field: value}).validate()


def test_cross_field_rules() -> None:
    with pytest.raises(ValueError, match="reconnect_max_ms"):
        P2PConfig(reconnect_initial_ms=1_000, reconnect_max_ms=500).validate()
    with pytest.raises(ValueError, match="idle_timeout_ms"):
        P2PConfig(ping_interval_ms=1_000, idle_timeout_ms=1_500).validate()


def test_max_payload_leaves_room_for_channel_and_mac() -> None:
    assert P2PConfig(max_frame_bytes=1_000).max_payload_bytes == 1_000 - 1 - 17


def test_address_round_trip() -> None:
    text = f"{NODE_ID}@127.0.0.1:26656"
    address = NodeAddress.parse(text)
    assert (address.node_id, address.host, address.port) == (NODE_ID, "127.0.0.1", 26656)
    assert str(address) == text
    assert address.public_key == bytes.fromhex(NODE_ID)
    assert node_id(address.public_key) == NODE_ID


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:26656",
        f"{NODE_ID}@127.0.0.1",
        f"{NODE_ID}@:26656",
        f"{NODE_ID}@127.0.0.1:0",
        f"{NODE_ID}@127.0.0.1:65536",
        f"{NODE_ID}@127.0.0.1:²",
        f"{NODE_ID}@127.0.0.1:-1",
        f"{NODE_ID.upper()}@127.0.0.1:26656",
        f"{NODE_ID[:-2]}@127.0.0.1:26656",
        f"{NODE_ID[:-2]}zz@127.0.0.1:26656",
        f"{NODE_ID}@{'h' * 254}:26656",
    ],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        NodeAddress.parse(text)


def test_backoff_schedule_doubles_then_caps() -> None:
    schedule = [backoff_delay_ms(failures, 100, 1_000) for failures in range(7)]
    assert schedule == [100, 200, 400, 800, 1_000, 1_000, 1_000]
    assert backoff_delay_ms(10_000, 100, 30_000) == 30_000
    with pytest.raises(ValueError):
        backoff_delay_ms(-1, 100, 1_000)


def test_duplicate_rule_keeps_the_lower_dialer_on_both_sides() -> None:
    low, high = "1" * 64, "f" * 64
    # On the low node: existing dialed by high, new dialed by low -> replace; and vice versa.
    assert prefer_new_connection(low, high, local_id=low, peer_id=high)
    assert not prefer_new_connection(high, low, local_id=low, peer_id=high)
    # The high node sees the same two connections and reaches the same verdicts.
    assert prefer_new_connection(low, high, local_id=high, peer_id=low)
    assert not prefer_new_connection(high, low, local_id=high, peer_id=low)
    # The same dialer twice: it redialed because the old one is dead, so the new one wins.
    assert prefer_new_connection(high, high, local_id=low, peer_id=high)
    assert prefer_new_connection(low, low, local_id=low, peer_id=high)
