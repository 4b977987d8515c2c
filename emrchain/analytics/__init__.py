"""Off-chain analytics of issue #22: secure aggregation, the federated model."""
