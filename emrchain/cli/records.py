"""`emrchain kek status|rotate --home DIR`: the node's key-encryption keys and their rotation;
`emrchain seal-organization-key --home DIR`: the organisation key sealed under the HSM KEK.

`rotate` opens the home's record service (so the node must be stopped: the custody vault is one
process's LevelDB), starts a rotation or resumes the unfinished one, prints progress batch by
batch, and destroys the old versions once every custody wrap moved. Interrupted, it resumes
where it stopped the next time it runs.

`begin` (node stopped, for a moment) only generates the new version and records the rotation;
the node, when started, re-wraps in the background while it serves, so the downtime is a
restart rather than the whole walk. A node also finishes any rotation a crash left unfinished.
"""

from __future__ import annotations

import argparse
import asyncio

from emrchain.cli.arguments import add_home_argument
from emrchain.cli.registry import CommandError, command
from emrchain.config.node import NodeConfig, load_node_config
from emrchain.records.rotation import ROTATION_STATE_FILE, RotationError, read_state
from emrchain.storage.interfaces import StorageError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["status", "rotate", "begin"],
        help="show; rotate now (node stopped); or begin, for the node to finish when it starts",
    )
    add_home_argument(parser)


@command("kek", "show or rotate the key-encryption key of custody copies", arguments=_arguments)
def kek(args: argparse.Namespace) -> int:
    config = load_node_config(args.home)
    if args.action == "status":
        return _status(config)
    return _rotate(config, run_here=args.action == "rotate")


def _status(config: NodeConfig) -> int:
    from emrchain.records.key_rings import open_key_ring

    try:
        ring = open_key_ring(config)
    except StorageError as error:
        raise CommandError(str(error)) from None
    versions = ring.versions()
    print(f"backend {config.records.kek_backend}: KEK versions {versions}, current {versions[-1]}")
    try:
        progress = read_state(config.data_path / ROTATION_STATE_FILE)
    except RotationError as error:
        raise CommandError(str(error)) from None
    print(progress.describe() if progress else "no rotation in progress")
    return 0


def _rotate(config: NodeConfig, *, run_here: bool) -> int:
    from emrchain.records import open_record_service

    async def rotate() -> None:
        try:
            service = open_record_service(config)
        except StorageError as error:
            raise CommandError(
                f"cannot open the record stores (is the node running?): {error}"
            ) from None
        try:
            options = {"on_progress": lambda progress: print(progress.describe(), flush=True)}
            rotation = service.resume_rotation(**options)
            if rotation is None:
                # The sealed organisation key moves to the new version with the vault.
                rotation = service.begin_rotation(
                    organization_key_path=config.organization_key_path, **options
                )
            elif run_here:
                print(f"resuming: {rotation.progress.describe()}", flush=True)
            if run_here:
                await rotation.run()
            else:
                print(
                    f"{rotation.progress.describe()}; the node re-wraps in the background "
                    "when it starts (`emrchain kek status` shows the progress)",
                    flush=True,
                )
        except (RotationError, StorageError) as error:
            raise CommandError(str(error)) from None
        finally:
            await service.close()

    asyncio.run(rotate())
    return 0


@command(
    "seal-organization-key",
    "seal the plain organisation key file under the HSM KEK and wipe the plain file",
    arguments=add_home_argument,
)
def seal_organization_key(args: argparse.Namespace) -> int:
    """Node stopped: with `kek_backend = "hsm"` the node refuses the plain file until this ran."""
    from emrchain.records.key_rings import open_key_ring
    from emrchain.records.organization_key import seal_organization_key_file

    config = load_node_config(args.home)
    if config.records.kek_backend != "hsm":
        raise CommandError(
            'sealing the organisation key needs [records] kek_backend = "hsm" (the key files '
            "backend keeps the plain file)"
        )
    path = config.organization_key_path
    key = seal_organization_key_file(path, open_key_ring(config))
    print(f"{path}: organisation key {key.organization_id} sealed under the HSM KEK; "
          "the plain file was overwritten with zeros")
    return 0
