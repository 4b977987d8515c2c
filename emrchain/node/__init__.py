"""Node runtime: wires the packages into a running validator (see docs/ARCHITECTURE.md)."""
