"""Benchmarks that ship with the node (core ratios now; the devnet load generator later)."""
