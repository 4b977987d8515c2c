"""A local multi-validator devnet: N real `emrchain start` processes on 127.0.0.1.

Used by `emrchain devnet`, the README's demo and the end-to-end tests. Each validator is its own
OS process with its own home, so kill -9, restart and partial shutdowns are the real thing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from emrchain.config.homes import create_testnet
from emrchain.config.node import load_node_config, render_node_config
from emrchain.types import envelope

DEVNET_CONSENSUS = {
    "timeout_propose_ms": 1_000,
    "timeout_prevote_ms": 500,
    "timeout_precommit_ms": 500,
    "timeout_delta_ms": 250,
    "timeout_commit_ms": 100,
}
STOP_TIMEOUT_S = 15.0
WRITE_BUFFER_EIGHTHS = (8, 9, 10, 11)
"""Node i's LevelDB write buffer is WRITE_BUFFER_EIGHTHS[i % 4] / 8 of the default: see
`_tune_home`."""


class DevnetError(RuntimeError):
    pass


class Devnet:
    """Homes under `root` (created if missing) and the processes running them."""

    def __init__(
        self,
        root: Path,
        validators: int = 4,
        *,
        chain_id: str = "emrchain-devnet",
        consensus: dict[str, int | bool] | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """`settings`: `{section: {key: value}}` for every node's config (e.g. RPC limits)."""
        self.root = Path(root).absolute()
        self.homes: list[Path] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._log_files: dict[int, Any] = {}
        self.ssl_context: ssl.SSLContext | None = None
        """How `rpc()` checks nodes that serve HTTPS (`[rpc] tls_*`)."""
        if not (self.root / "node0").exists():
            self.homes, _ = create_testnet(
                self.root, validators=validators, chain_id=chain_id, host="127.0.0.1", base_port=0
            )
            for index, home in enumerate(self.homes):
                _tune_home(home, index, {**DEVNET_CONSENSUS, **(consensus or {})})
                if settings:
                    self.configure(index, settings)
        else:
            self.homes = sorted(
                (path for path in self.root.iterdir() if (path / "config" / "node.toml").exists()),
                key=lambda path: int(path.name.removeprefix("node")),
            )
        self.rpc_urls = [self._rpc_url(home) for home in self.homes]

    def instrumentation_url(self, index: int) -> str:
        """Base URL of node `index`'s /metrics, /health and /ready (testnet homes enable it)."""
        address = load_node_config(self.homes[index]).instrumentation.listen_address
        return f"http://{address.host}:{address.port}"

    @staticmethod
    def _rpc_url(home: Path) -> str:
        rpc = load_node_config(home).rpc
        scheme = "https" if rpc.tls_certificate_file else "http"
        return f"{scheme}://{rpc.listen_address.host}:{rpc.listen_address.port}"

    def configure(self, index: int, settings: dict[str, dict[str, Any]]) -> None:
        """Change node `index`'s config: `{section: {key: value}}` (it must still load)."""
        home = self.homes[index]
        config = load_node_config(home)
        changed = dataclasses.replace(
            config,
            **{
                section: dataclasses.replace(getattr(config, section), **values)
                for section, values in settings.items()
            },
        )
        config.config_path.write_text(render_node_config(changed))
        load_node_config(home)
        if hasattr(self, "rpc_urls"):
            self.rpc_urls[index] = self._rpc_url(home)

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    # ----------------------------------------------------------------- processes

    def log_path(self, index: int) -> Path:
        return self.homes[index] / "node.log"

    def start(self, index: int) -> None:
        if index in self.processes and self.processes[index].poll() is None:
            raise DevnetError(f"node{index} is already running")
        log = open(self.log_path(index), "ab")  # noqa: SIM115 - closed in _reap
        self._log_files[index] = log
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "emrchain.cli", "start", "--home", str(self.homes[index])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # Ctrl-C in a terminal reaches the devnet, which stops us
        )

    def start_all(self) -> None:
        for index in range(len(self.homes)):
            self.start(index)

    def kill(self, index: int) -> None:
        """kill -9: no shutdown code runs."""
        process = self.processes.get(index)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._reap(index)

    def stop(self, index: int) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        process = self.processes.get(index)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reap(index)
        return process.returncode

    def stop_all(self) -> None:
        for index in list(self.processes):
            self.stop(index)

    def _reap(self, index: int) -> None:
        log = self._log_files.pop(index, None)
        if log is not None:
            log.close()

    def is_running(self, index: int) -> bool:
        process = self.processes.get(index)
        return process is not None and process.poll() is None

    # ----------------------------------------------------------------------- rpc

    def rpc(self, index: int, path: str, body: dict | None = None, timeout_s: float = 5.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.rpc_urls[index] + path,
            data=data,
            headers={"Content-Type": "application/json"} if data else {},
            method="POST" if data is not None else "GET",
        )
        try:
            with urllib.request.urlopen(
                request, timeout=timeout_s, context=self.ssl_context
            ) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read() or b"{}") | {"http_status": error.code}

    def try_status(self, index: int) -> dict[str, Any] | None:
        try:
            return self.rpc(index, "/status", timeout_s=2.0)
        except (OSError, ValueError):
            return None

    def wait_for(self, predicate, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(poll_s)
        raise DevnetError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def submit(
        self, txs: list[bytes], nodes: list[int] | None = None, batch_size: int = 1000
    ) -> list[str]:
        """Submit `txs` over RPC and return the ids of the accepted ones, in order.

        All transactions of one sender go to the same node, in order: a mempool admits only a
        sender's next nonce, and gossip between nodes is not instantaneous.
        """
        targets = nodes if nodes is not None else list(range(len(self.homes)))
        per_node: dict[int, list[bytes]] = {}
        for tx in txs:
            sender = envelope.sender(tx)
            per_node.setdefault(targets[sender[0] % len(targets)], []).append(tx)
        accepted: list[str] = []
        for node, node_txs in per_node.items():
            for offset in range(0, len(node_txs), batch_size):
                batch = node_txs[offset : offset + batch_size]
                reply = self.rpc(node, "/txs", {"txs": [tx.hex() for tx in batch]}, timeout_s=30)
                accepted += [result["tx_id"] for result in reply["results"] if result["accepted"]]
        return accepted

    def wait_committed(self, index: int, tx_ids: list[str], timeout_s: float = 120.0) -> None:
        """Wait until node `index` reports every one of `tx_ids` committed (each is asked until
        it is, so the polling shrinks as the chain catches up)."""
        pending = list(tx_ids)

        def all_committed() -> bool:
            nonlocal pending
            pending = [
                tx_id
                for tx_id in pending
                if self.rpc(index, f"/txs/{tx_id}").get("status") != "committed"
            ]
            return not pending

        self.wait_for(all_committed, timeout_s, f"{len(tx_ids)} transactions to commit")

    def register_workload_members(
        self,
        *,
        senders: int,
        seed: int = 0,
        node: int = 0,
        timeout_s: float = 120.0,
        committed_on: list[int] | None = None,
    ) -> None:
        """Node `node`'s organisation admin registers the workload's clinicians and patients
        (`emrchain.devnet.workload`), and waits until every node in `committed_on` (default: all)
        has committed them: a node admits a sender's transactions only once its own state
        has the sender as a member (`docs/spec/state.md` §6)."""
        from emrchain.client.sync import SyncEmrClient
        from emrchain.config.homes import ADMIN_IDENTITY_FILE
        from emrchain.devnet.workload import registration_transactions
        from emrchain.keystore.member import load_member_identity

        config = load_node_config(self.homes[node])
        admin = load_member_identity(config.resolve(ADMIN_IDENTITY_FILE))
        with SyncEmrClient(self.rpc_urls[node], admin) as client:
            first_nonce = client.next_nonce()
        txs = registration_transactions(
            admin.signer,
            config.node.organization_id,
            chain_id=self.rpc(node, "/status")["chain_id"].encode(),
            senders=senders,
            seed=seed,
            first_nonce=first_nonce,
        )
        accepted = self.submit(txs, nodes=[node])
        if len(accepted) != len(txs):
            raise DevnetError(f"only {len(accepted)} of {len(txs)} registrations were accepted")
        targets = committed_on if committed_on is not None else list(range(len(self.homes)))
        for index in targets:
            self.wait_committed(index, accepted[-1:], timeout_s=timeout_s)

    def height(self, index: int) -> int:
        status = self.try_status(index)
        return status["latest_height"] if status else -1

    def wait_for_height(self, height: int, nodes: list[int], timeout_s: float = 60.0) -> None:
        self.wait_for(
            lambda: all(self.height(index) >= height for index in nodes),
            timeout_s,
            f"nodes {nodes} to reach height {height}",
        )


def _tune_home(home: Path, index: int, consensus: dict[str, Any]) -> None:
    """The devnet's settings for node `index`: its consensus timeouts, and a LevelDB write
    buffer of 1, 1.125, 1.25 or 1.375 times the default.

    Why the buffers differ: a devnet's nodes write identical blocks at identical rates, so with
    equal buffers they flush their memtables in the same second and start their big level-0
    compactions together — on machines of their own that costs nothing, but a devnet's nodes
    share the machine's cores, and the stacked compactions become the tail of every latency
    figure. Different sizes spread them out (at 5,000 TPS on four validators: p95 1,345 ->
    958 ms, BENCHMARKS.md, 2026-12-01 third session). A node's own default is unchanged.

    `consensus` maps `[consensus]` keys to values; loading the tuned file checks them."""
    config = load_node_config(home)
    storage = config.storage
    buffer = storage.write_buffer_bytes * WRITE_BUFFER_EIGHTHS[index % 4] // 8
    tuned = dataclasses.replace(
        config,
        consensus=dataclasses.replace(config.consensus, **consensus),
        storage=dataclasses.replace(storage, write_buffer_bytes=buffer),
    )
    config.config_path.write_text(render_node_config(tuned))
    load_node_config(home)  # the tuned file must still pass every check
