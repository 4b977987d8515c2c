"""Node configuration (`config/node.toml`) and the genesis document (`config/genesis.json`).

Both are validated strictly; every error is a `ConfigError` naming the file and the key.
"""

from emrchain.config.address import Address, PeerAddress, parse_address, parse_peer_address
from emrchain.config.errors import ConfigError
from emrchain.config.genesis import (
    Genesis,
    GenesisOrganization,
    GenesisValidator,
    check_config_matches_genesis,
    load_config_and_genesis,
    load_genesis,
    parse_genesis,
    parse_genesis_text,
    validate_chain_id,
)
from emrchain.config.node import (
    NODE_CONFIG_FILE,
    ConsensusSection,
    KeysSection,
    LogSection,
    MempoolSection,
    NodeConfig,
    NodeSection,
    P2PSection,
    RpcSection,
    StorageSection,
    load_node_config,
    node_config_path,
    parse_node_config,
    parse_node_config_text,
    render_node_config,
)

__all__ = [
    "NODE_CONFIG_FILE",
    "Address",
    "ConfigError",
    "ConsensusSection",
    "Genesis",
    "GenesisOrganization",
    "GenesisValidator",
    "KeysSection",
    "LogSection",
    "MempoolSection",
    "NodeConfig",
    "NodeSection",
    "P2PSection",
    "PeerAddress",
    "RpcSection",
    "StorageSection",
    "check_config_matches_genesis",
    "load_config_and_genesis",
    "load_genesis",
    "load_node_config",
    "node_config_path",
    "parse_address",
    "parse_genesis",
    "parse_genesis_text",
    "parse_node_config",
    "parse_node_config_text",
    "parse_peer_address",
    "render_node_config",
    "validate_chain_id",
]
