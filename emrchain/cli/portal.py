"""`emrchain portal`: the member's local web portal (`docs/portal.md`), like a wallet.

It loads the member's key here, serves pages on 127.0.0.1 only, and prints the start URL
with its one-time random token; the browser opens that URL to get its session cookie.
"""

from __future__ import annotations

import argparse
import asyncio

from emrchain.cli.arguments import bounded_integer, home_path
from emrchain.cli.client import DEFAULT_RPC_URL, _passphrase_prompt, rpc_url
from emrchain.cli.registry import CommandError, command
from emrchain.client.identity import load_identity
from emrchain.client.replies import EmrClientError
from emrchain.client.rpc import TlsOptions
from emrchain.portal.app import Portal, start_portal

MAX_PORT = 65_535


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", type=home_path, required=True, metavar="FILE", help="member identity file"
    )
    parser.add_argument(
        "--node", type=rpc_url, default=DEFAULT_RPC_URL, help=f"node RPC URL ({DEFAULT_RPC_URL})"
    )
    parser.add_argument(
        "--ca-file", type=home_path, metavar="FILE", help="PEM CAs of an https:// node"
    )
    parser.add_argument(
        "--client-certificate",
        type=home_path,
        metavar="FILE",
        help="PEM certificate (and key) for a node that asks for one",
    )
    parser.add_argument("--client-key", type=home_path, metavar="FILE", help="its PEM key")
    parser.add_argument(
        "--port",
        type=bounded_integer(0, MAX_PORT),
        default=0,
        help="port on 127.0.0.1 (default 0: a free one)",
    )


@command("portal", "the member's local web portal on 127.0.0.1", arguments=_arguments)
def portal(args: argparse.Namespace) -> int:
    identity = load_identity(args.key, _passphrase_prompt(f"passphrase of {args.key}"))
    try:
        tls = TlsOptions(args.ca_file, args.client_certificate, args.client_key)
        asyncio.run(_serve(Portal(identity, args.node, tls), args.port))
    except (EmrClientError, ValueError) as error:
        raise CommandError(f"the node at {args.node}: {error}") from None
    return 0


async def _serve(member_portal: Portal, port: int) -> None:
    runner = await start_portal(member_portal, port)
    print(f"portal of {member_portal.who()}", flush=True)
    print(f"open {member_portal.guard.start_url()}", flush=True)
    print("(the link holds this session's secret: do not share it; Ctrl-C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
