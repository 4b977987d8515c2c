"""The node's HTTP API (aiohttp): submit transactions, read their status and proofs, blocks."""
