"""The homes a `Devnet` creates: the devnet's consensus timeouts in every node's config, and
LevelDB write buffers that differ between co-located nodes (`devnet._tune_home` says why)."""

from __future__ import annotations

from pathlib import Path

from emrchain.config.node import StorageSection, load_node_config
from emrchain.devnet.harness import DEVNET_CONSENSUS, Devnet


def test_devnet_homes_have_its_timeouts_and_staggered_write_buffers(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path / "net", validators=4, consensus={"timeout_commit_ms": 50})
    configs = [load_node_config(home) for home in devnet.homes]
    default = StorageSection().write_buffer_bytes
    assert [config.storage.write_buffer_bytes for config in configs] == [
        default,
        default * 9 // 8,
        default * 10 // 8,
        default * 11 // 8,
    ]
    for config in configs:
        assert config.consensus.timeout_commit_ms == 50  # the caller's value wins
        assert config.consensus.timeout_propose_ms == DEVNET_CONSENSUS["timeout_propose_ms"]
        # Everything else in storage is the node's default.
        assert config.storage.state_cache_entries == StorageSection().state_cache_entries
