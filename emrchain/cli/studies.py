"""Study commands (`docs/spec/analytics.md` §5): `emrchain study propose|approve|query|status|
close` and a patient's `emrchain research-consent --opt-in|--opt-out`.

Budgets are given as decimals (`--epsilon 1.5`, `--delta 1e-6`) and sent as the chain's integers
(millionths, 10^-12 units). `study query` is the sponsor's aggregator: it submits the query,
fetches each participant's masked contribution from that participant's node (`--node ORG=URL`,
one per participant), prints the released figures and anchors their SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from emrchain.analytics.aggregator import AggregationError, run_query
from emrchain.cli.client import (
    _connection_arguments,
    _passphrase_prompt,
    _print_json,
    hex_id,
    organization_id,
    rpc_url,
)
from emrchain.cli.registry import CommandError, command
from emrchain.client.envelope import EnvelopeError
from emrchain.client.identity import load_identity
from emrchain.client.replies import EmrClientError
from emrchain.client.rpc import EmrClient, TlsOptions
from emrchain.schema import (
    DELTA_UNITS_PER_ONE,
    EPSILON_UNITS_PER_ONE,
    MEASURE_CODE_MAX_BYTES,
    STUDY_PURPOSE_MAX_BYTES,
    QueryType,
)

QUERY_TYPES = {kind.name.lower(): kind for kind in QueryType}
Result = TypeVar("Result")


def _units(per_one: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = Decimal(text) * per_one
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value < 0 or value != value.to_integral_value():
            raise argparse.ArgumentTypeError(f"{what} must be >= 0 in steps of 1/{per_one}")
        return int(value)

    return parse


def _milli(text: str) -> int:
    return _units(1_000, "a bound")(text)


def _node(text: str) -> tuple[str, str]:
    name, separator, url = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected ORG=URL, got {text!r}")
    return organization_id(name), rpc_url(url)


def _run(args: argparse.Namespace, action: Callable[[EmrClient], Awaitable[Result]]) -> Result:
    identity = load_identity(args.key, _passphrase_prompt("passphrase of " + str(args.key)))
    tls = TlsOptions(args.ca_file, args.client_certificate, args.client_key)

    async def main() -> Result:
        async with EmrClient(args.rpc, identity, tls=tls) as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except (EmrClientError, EnvelopeError, AggregationError, ValueError) as error:
        raise CommandError(str(error)) from None


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="study_action", metavar="<action>", required=True)
    propose = actions.add_parser("propose", help="propose a study (you become its sponsor)")
    propose.add_argument("--purpose", required=True)
    propose.add_argument("--participant", action="append", type=organization_id, required=True)
    propose.add_argument("--query-types", nargs="+", choices=sorted(QUERY_TYPES), required=True)
    propose.add_argument("--epsilon", type=_units(EPSILON_UNITS_PER_ONE, "epsilon"), required=True)
    propose.add_argument("--delta", type=_units(DELTA_UNITS_PER_ONE, "delta"), required=True)
    propose.add_argument("--expires-in-hours", type=float, default=24 * 30)
    approve = actions.add_parser("approve", help="approve a study (a participant's admin)")
    query = actions.add_parser("query", help="run a query and anchor its released result")
    query.add_argument("--type", choices=sorted(QUERY_TYPES), required=True)
    query.add_argument("--measure", required=True, help="the Observation code, e.g. 4548-4")
    query.add_argument("--lower", type=_milli, default=0, help="clamping lower bound")
    query.add_argument("--upper", type=_milli, default=0, help="clamping upper bound")
    query.add_argument("--bins", type=int, default=0, help="histogram bins (1..64)")
    query.add_argument("--epsilon", type=_units(EPSILON_UNITS_PER_ONE, "epsilon"), required=True)
    query.add_argument("--delta", type=_units(DELTA_UNITS_PER_ONE, "delta"), required=True)
    query.add_argument("--node", action="append", type=_node, required=True, metavar="ORG=URL")
    status = actions.add_parser("status", help="a study's terms, budget, queries and results")
    close = actions.add_parser("close", help="close a study (sponsor or a participant's admin)")
    for action in (approve, query, status, close):
        action.add_argument("study_id", type=hex_id("study id"), metavar="STUDY_ID")
    for action in (propose, approve, query, status, close):
        _connection_arguments(action)


def _propose(args: argparse.Namespace) -> int:
    if len(args.purpose.encode()) > STUDY_PURPOSE_MAX_BYTES:
        raise CommandError(f"--purpose is longer than {STUDY_PURPOSE_MAX_BYTES} bytes")
    study_id = secrets.token_bytes(32)
    expires_at_ms = time.time_ns() // 1_000_000 + int(args.expires_in_hours * 3_600_000)
    committed = _run(
        args,
        lambda client: client.propose_study(
            study_id=study_id,
            purpose=args.purpose,
            query_types=[QUERY_TYPES[name] for name in args.query_types],
            epsilon_total=args.epsilon,
            delta_total=args.delta,
            participants=sorted(set(args.participant)),
            expires_at_ms=expires_at_ms,
        ),
    )
    print(f"study {study_id.hex()} proposed at height {committed.height}")
    return 0


def _query(args: argparse.Namespace) -> int:
    if len(args.measure.encode()) > MEASURE_CODE_MAX_BYTES:
        raise CommandError(f"--measure is longer than {MEASURE_CODE_MAX_BYTES} bytes")
    release = _run(
        args,
        lambda client: run_query(
            client,
            dict(args.node),
            args.study_id,
            QUERY_TYPES[args.type],
            args.measure,
            epsilon=args.epsilon,
            delta=args.delta,
            lower_milli=args.lower,
            upper_milli=args.upper,
            bins=args.bins,
        ),
    )
    _print_json(
        {
            "query_id": release.query_id.hex(),
            "height": release.height,
            "figures": release.figures,
            "result_sha256": release.result_sha256.hex(),
        }
    )
    return 0


@command(
    "study", "research studies: propose, approve, query, status, close", arguments=_study_arguments
)
def study(args: argparse.Namespace) -> int:
    if args.study_action == "propose":
        return _propose(args)
    if args.study_action == "query":
        return _query(args)
    if args.study_action == "status":
        _print_json(_run(args, lambda client: client.study(args.study_id)))
        return 0
    calls: dict[str, Callable[[EmrClient], Awaitable[Any]]] = {
        "approve": lambda client: client.approve_study(args.study_id),
        "close": lambda client: client.close_study(args.study_id),
    }
    committed = _run(args, calls[args.study_action])
    print(f"study {args.study_id.hex()}: {args.study_action} committed at {committed.height}")
    return 0


def _consent_arguments(parser: argparse.ArgumentParser) -> None:
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--opt-in", action="store_true", help="allow research use")
    choice.add_argument("--opt-out", action="store_true", help="withdraw it")
    _connection_arguments(parser)


@command(
    "research-consent",
    "patients: opt in to or out of research use of your records",
    arguments=_consent_arguments,
)
def research_consent(args: argparse.Namespace) -> int:
    committed = _run(args, lambda client: client.research_consent(bool(args.opt_in)))
    choice = "opted in" if args.opt_in else "opted out"
    print(f"research consent: {choice} at height {committed.height}")
    return 0
