"""The subsystem configs a node builds at start, each derived from the loaded node config.

Every value comes from a setting declared in `emrchain/config/node.py` (default, range, unit);
nothing here has a default or a range of its own. `tests/config/test_settings_property.py`
checks that every config the loader accepts builds and validates here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

from emrchain.config.node import NodeConfig
from emrchain.consensus.config import ConsensusConfig
from emrchain.mempool.config import MempoolConfig
from emrchain.node.admission import AdmissionLimits
from emrchain.node.blocksync import SyncLimits
from emrchain.node.consensus_driver import DriverLimits
from emrchain.p2p.config import P2P_SETTINGS, P2PConfig
from emrchain.statesync.join import JoinSettings
from emrchain.statesync.service import SnapshotSettings
from emrchain.store.database import DatabaseOptions
from emrchain.store.pruning import PruneSettings

Built = TypeVar("Built")


@dataclass(frozen=True, slots=True)
class RuntimeIntervals:
    """The node's periodic loops and gossip batches: `[consensus] status_interval_ms` and the
    `[mempool]` gossip settings (their docs say what each does)."""

    status_interval_ms: int
    gossip_interval_ms: int
    max_gossip_txs: int
    max_gossip_bytes: int
    max_queued_gossip_batches: int
    relay_peer_txs: bool


def from_sections(built: type[Built], *sections: object) -> Built:
    """`built(...)` with each field taken from the first section declaring a setting of that
    name. A field no section declares keeps its class default (a bound of the subsystem's own
    that is not a node setting, such as the consensus core's per-validator buffers); without
    a default it is an error."""
    values: dict[str, Any] = {}
    for field in fields(built):  # type: ignore[arg-type]
        holder = next((section for section in sections if hasattr(section, field.name)), None)
        if holder is not None:
            values[field.name] = getattr(holder, field.name)
        elif field.default is MISSING and field.default_factory is MISSING:
            raise TypeError(f"{built.__name__}.{field.name} is not a declared setting")
    return built(**values)


SECTIONS_OF: dict[type, tuple[str, ...]] = {
    ConsensusConfig: ("consensus",),
    DriverLimits: ("consensus",),
    RuntimeIntervals: ("consensus", "mempool"),
    SyncLimits: ("consensus",),
    MempoolConfig: ("mempool", "limits"),
    AdmissionLimits: ("mempool",),
    DatabaseOptions: ("storage",),
    SnapshotSettings: ("statesync",),
    JoinSettings: ("statesync",),
    PruneSettings: ("storage",),
}
"""Each config the node builds by field name, and the sections (in order) its fields come from."""


def build(built: type[Built], config: NodeConfig) -> Built:
    """`built` from the settings of its sections in `config` (see `SECTIONS_OF`)."""
    return from_sections(built, *(getattr(config, name) for name in SECTIONS_OF[built]))


def p2p_config(config: NodeConfig) -> P2PConfig:
    section = config.p2p
    return P2PConfig(
        listen_host=section.listen_address.host,
        listen_port=section.listen_address.port,
        persistent_peers=tuple(str(peer) for peer in section.persistent_peers),
        **{name: getattr(section, name) for name in P2P_SETTINGS},
    )
