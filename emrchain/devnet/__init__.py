"""Tooling around a local devnet, never imported by the node: the harness that runs N real
validator processes (`harness.py`), deterministic synthetic workloads (`workload.py`), the demo
story played through the client library (`story.py`) and the RPC fuzzer (`fuzz_rpc.py`)."""
