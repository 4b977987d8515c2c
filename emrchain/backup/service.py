"""Backups of a running node: its admin socket and its `[backup]` schedule.

The node holds the LevelDB locks of its chain store and vault, so another process cannot read
them. `emrchain backup create` therefore asks the node over a unix socket in its data directory
(`admin.sock`, mode 0600: only the node's user may connect), one JSON request line and one
JSON answer line. The node takes the two snapshots on its event loop (vault first, then chain,
with nothing in between) and writes the archive from them in a worker thread while it goes on
committing; one backup at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emrchain.backup.archive import BackupError, parse_recipient
from emrchain.backup.create import BackupResult, capture, write_backup
from emrchain.config.node import BackupSection, NodeConfig
from emrchain.store.database import ChainDatabase

logger = logging.getLogger(__name__)

ADMIN_SOCKET = "admin.sock"
MAX_REQUEST_BYTES = 64 * 1024
MAX_SOCKET_PATH_BYTES = 107
"""sun_path holds 108 bytes on Linux, the terminating NUL included."""
ADMIN_TIMEOUT_S = 3_600.0
"""How long the CLI waits for the node's answer: a large store takes a while to encrypt."""


def admin_socket_path(config: NodeConfig) -> Path:
    return config.data_path / ADMIN_SOCKET


class BackupService:
    def __init__(
        self,
        config: NodeConfig,
        database: ChainDatabase,
        vault_snapshot: Callable[[], Any] | None,
    ) -> None:
        self._config = config
        self._database = database
        self._vault_snapshot = vault_snapshot
        self._busy = False
        self._server: asyncio.AbstractServer | None = None
        self._writing: asyncio.Future[BackupResult] | None = None
        self.completed = 0

    @property
    def settings(self) -> BackupSection:
        return self._config.backup

    async def create(self, directory: Path, recipient: str, keep: int) -> BackupResult:
        """One backup into `directory` (snapshots now, the writing in a thread)."""
        if self._busy:
            raise BackupError("a backup is already being written by this node; try again later")
        parse_recipient(recipient)
        if not directory.is_absolute():
            raise BackupError(f"the backup directory must be an absolute path, got {directory}")
        self._busy = True
        try:
            # Files and snapshots now, on the loop, between two commits' steps; the archive is
            # written from them in a thread. Kept so that `close` can wait for it: the thread
            # reads the databases, which must stay open until it is done even if the request
            # that started it is cancelled.
            captured = capture(self._config, self._snapshots)
            self._writing = asyncio.get_running_loop().run_in_executor(
                None, write_backup, self._config, captured, directory, recipient, keep
            )
            result = await asyncio.shield(self._writing)
        finally:
            self._busy = False
        self.completed += 1
        logger.info(
            "backup written: %s (height %d, %d parts)",
            result.path,
            result.manifest.height,
            len(result.manifest.parts),
        )
        return result

    def _snapshots(self) -> tuple[Any, Any]:
        vault = None if self._vault_snapshot is None else self._vault_snapshot()
        return vault, self._database.db.snapshot()

    # ----------------------------------------------------------- admin socket

    async def start(self) -> None:
        """Listen on the admin socket (replacing a stale one left by a crash)."""
        path = admin_socket_path(self._config)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            logger.error(
                "admin socket %s: path longer than %d bytes; `emrchain backup create` cannot "
                "reach this node (scheduled backups still run)",
                path,
                MAX_SOCKET_PATH_BYTES,
            )
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_mask = os.umask(0o177)  # created 0600: only the node's user may connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_mask)

    async def close(self) -> None:
        """Stop listening and wait for a backup being written (before the databases close)."""
        if self._writing is not None:
            await asyncio.wait([self._writing])
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                admin_socket_path(self._config).unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readline()
            request = json.loads(line)
            if not isinstance(request, dict) or request.get("command") != "backup":
                return {"ok": False, "error": "unknown admin request (expected command backup)"}
            directory, recipient, keep = request["directory"], request["recipient"], request["keep"]
            if not (
                isinstance(directory, str) and isinstance(recipient, str) and type(keep) is int
            ):
                return {
                    "ok": False,
                    "error": "directory and recipient are strings, keep an integer",
                }
            if not 1 <= keep <= 10_000:
                return {"ok": False, "error": f"keep must be within 1..10000, got {keep}"}
            result = await self.create(Path(directory), recipient, keep)
        except (ValueError, KeyError, asyncio.LimitOverrunError) as error:
            return {"ok": False, "error": f"malformed admin request: {error}"}
        except (BackupError, OSError) as error:
            return {"ok": False, "error": str(error)}
        return {"ok": True, **result.summary()}

    # ----------------------------------------------------------- schedule

    async def run_schedule(self) -> None:
        """With `[backup] interval_ms` > 0: a backup every interval (the first one interval
        after start); a failure is logged and the next interval tries again."""
        settings = self.settings
        if settings.interval_ms == 0:
            return
        while True:
            await asyncio.sleep(settings.interval_ms / 1000)
            try:
                await self.create(Path(settings.directory), settings.recipient, settings.keep)
            except (BackupError, OSError) as error:
                logger.error("scheduled backup failed: %s", error)


def request_backup(socket_path: Path, directory: Path, recipient: str, keep: int) -> dict[str, Any]:
    """Ask the node listening on `socket_path` for a backup; its answer (`ok` says whether it
    was made). ConnectionError if no node listens there."""
    request = {
        "command": "backup",
        "directory": str(directory),
        "recipient": recipient,
        "keep": keep,
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(ADMIN_TIMEOUT_S)
        connection.connect(str(socket_path))
        connection.sendall(json.dumps(request).encode() + b"\n")
        received = b""
        while not received.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    try:
        answer = json.loads(received)
    except ValueError:
        raise BackupError(f"the node at {socket_path} gave no valid answer") from None
    if not isinstance(answer, dict):
        raise BackupError(f"the node at {socket_path} gave no valid answer")
    return answer
