"""Client commands: `keys new`, `record put|get`, `grant`, `revoke`, `grants`, `audit`,
`break-glass`, `erase`, `fhir read|search|put|get`, `export`.

Each talks to one node (`--rpc URL`) as one member (`--key FILE`, a member identity file). All
encryption happens here, in the client process; the node receives ciphertext and signed
transactions only. Bad arguments exit 2 with one line; a refusal by the node or the chain exits
1 with one line naming the HTTP status and code, or the result code's name.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emrchain.cli.arguments import bounded_integer, home_path
from emrchain.cli.registry import CommandError, UsageError, command
from emrchain.client.envelope import DEFAULT_MAX_PLAINTEXT_BYTES, EnvelopeError
from emrchain.client.identity import (
    PASSPHRASE_VARIABLE,
    create_identity_file,
    load_identity,
    save_identity,
)
from emrchain.client.replies import EmrClientError
from emrchain.client.rpc import DEFAULT_TRAIL_LIMIT, MAX_TRAIL_LIMIT, TlsOptions, check_base_url
from emrchain.client.sync import SyncEmrClient
from emrchain.schema import (
    AMENDMENT_NOTE_MAX_BYTES,
    BREAK_GLASS_MAX_DURATION_MS,
    REVIEW_NOTE_MAX_BYTES,
    U64_MAX,
    AmendmentReason,
    ErasureReason,
    RecordType,
    ReviewOutcome,
)

DEFAULT_RPC_URL = "http://127.0.0.1:26657"
BREAK_GLASS_REASON_BYTES = (8, 512)
ORGANIZATION_ID_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")
RECORD_TYPES = {kind.name.lower(): kind for kind in RecordType}
ERASURE_REASONS = {reason.name.lower(): reason for reason in ErasureReason}
AMENDMENT_REASONS = {reason.name.lower().replace("_", "-"): reason for reason in AmendmentReason}
REVIEW_OUTCOMES = {outcome.name.lower().replace("_", "-"): outcome for outcome in ReviewOutcome}


# ---- argument types (their errors are usage errors: one line, exit 2) ----------------------


def hex_id(what: str) -> Callable[[str], bytes]:
    """32 bytes as 64 hex characters, not all zero (the chain refuses zero ids)."""

    def parse(text: str) -> bytes:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise argparse.ArgumentTypeError(f"{what} must be 64 hex characters, got {text!r}")
        value = bytes.fromhex(text)
        if value == bytes(32):
            raise argparse.ArgumentTypeError(f"{what} must not be all zeros")
        return value

    return parse


def rpc_url(text: str) -> str:
    try:
        return check_base_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def organization_id(text: str) -> str:
    if not ORGANIZATION_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be 1..64 characters of a-z 0-9 . _ -, got {text!r}")
    return text


def bounded_text(maximum_bytes: int) -> Callable[[str], str]:
    """UTF-8 text of at most `maximum_bytes` bytes (an amendment's or a review's note)."""

    def parse(text: str) -> str:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise argparse.ArgumentTypeError("must be valid text (UTF-8)") from None
        if size > maximum_bytes:
            raise argparse.ArgumentTypeError(f"must be at most {maximum_bytes} bytes, got {size}")
        return text

    return parse


def break_glass_reason(text: str) -> str:
    minimum, maximum = BREAK_GLASS_REASON_BYTES
    size = len(text.encode("utf-8", "surrogatepass"))
    if not minimum <= size <= maximum:
        raise argparse.ArgumentTypeError(f"must be {minimum}..{maximum} bytes, got {size}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("must be valid text (UTF-8)") from None
    return text


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc", type=rpc_url, default=DEFAULT_RPC_URL, help=f"node RPC URL ({DEFAULT_RPC_URL})"
    )
    parser.add_argument(
        "--key", type=home_path, required=True, metavar="FILE", help="member identity file"
    )
    parser.add_argument(
        "--ca-file",
        type=home_path,
        metavar="FILE",
        help="PEM CAs an https:// node's certificate must chain to (default: the system's)",
    )
    parser.add_argument(
        "--client-certificate",
        type=home_path,
        metavar="FILE",
        help="PEM certificate (and, in the same file or --client-key, its key) for a node "
        "that asks for client certificates",
    )
    parser.add_argument("--client-key", type=home_path, metavar="FILE", help="its PEM key")


def _one_target(parser: argparse.ArgumentParser, record_help: str, patient_help: str) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--record", type=hex_id("record id"), metavar="ID", help=record_help)
    target.add_argument("--patient", type=hex_id("patient id"), metavar="HEX", help=patient_help)


# ---- running a client call ---------------------------------------------------------------


def _with_client(args: argparse.Namespace, action: Callable[[SyncEmrClient], Any]) -> Any:
    """Run `action` with a client for `--rpc` as `--key`; client errors become one line."""
    identity = load_identity(args.key, _passphrase_prompt("passphrase of " + str(args.key)))
    try:
        tls = TlsOptions(args.ca_file, args.client_certificate, args.client_key)
        with SyncEmrClient(args.rpc, identity, tls=tls) as client:
            return action(client)
    except (EmrClientError, EnvelopeError, ValueError) as error:
        # ValueError: a value the client or the transaction schema refuses (user input).
        raise CommandError(str(error)) from None


def _write_new_private_file(path: Path, content: bytes) -> None:
    """Write `content` to a new file only its owner can read; refuse to replace a file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path}: already exists; refusing to overwrite it") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def _read_bounded_file(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise CommandError(f"{path}: larger than the record limit of {limit} bytes")
    return content


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


# ---- keys ----------------------------------------------------------------------------------


def _keys_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_action", metavar="<action>", required=True)
    new = actions.add_parser(
        "new",
        help=f"create a member identity file (mode 0600), encrypted under a passphrase "
        f"({PASSPHRASE_VARIABLE}, or asked on a terminal)",
    )
    new.add_argument("--out", type=home_path, required=True, metavar="FILE", help="new file")
    new.add_argument("--plain", action="store_true", help="write the seed unencrypted")
    new.set_defaults(_parser=new)  # errors name "emrchain keys new"
    encrypt = actions.add_parser("encrypt", help="write an encrypted copy of an identity file")
    encrypt.add_argument("--key", type=home_path, required=True, metavar="FILE", help="identity")
    encrypt.add_argument("--out", type=home_path, required=True, metavar="FILE", help="new file")
    encrypt.set_defaults(_parser=encrypt)


@command("keys", "member identity files", arguments=_keys_arguments)
def keys(args: argparse.Namespace) -> int:
    if args.keys_action == "encrypt":
        identity = load_identity(args.key, _passphrase_prompt(f"passphrase of {args.key}"))
        save_identity(args.out, identity, _new_passphrase(args.out))
    else:
        passphrase = None if args.plain else _new_passphrase(args.out)
        identity = create_identity_file(args.out, passphrase)
    plain = args.keys_action == "new" and args.plain
    print(f"wrote {args.out}" + ("" if plain else " (encrypted)"))
    print(f"  member key      {identity.member_key.hex()}")
    print(f"  encryption key  {identity.encryption_public_key.hex()}")
    return 0


def _passphrase_prompt(prompt: str) -> Callable[[], str] | None:
    """A terminal prompt when there is one and the environment gives no passphrase."""
    if os.environ.get(PASSPHRASE_VARIABLE) is not None or not sys.stdin.isatty():
        return None
    return lambda: getpass.getpass(f"{prompt}: ")


def _new_passphrase(path: Path) -> str:
    """The passphrase for a new encrypted file: the environment's, or asked twice."""
    given = os.environ.get(PASSPHRASE_VARIABLE)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise CommandError(
            f"{path}: no passphrase: set {PASSPHRASE_VARIABLE}, run on a terminal, or --plain"
        )
    first = getpass.getpass(f"new passphrase for {path}: ")
    if getpass.getpass("again: ") != first:
        raise CommandError("the two passphrases differ")
    return first


# ---- records -------------------------------------------------------------------------------


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="record_action", metavar="<action>", required=True)
    put = actions.add_parser("put", help="encrypt a file, store it and anchor it")
    put.add_argument("file", type=home_path, metavar="FILE", help="the record (plaintext)")
    put.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    put.add_argument("--type", choices=sorted(RECORD_TYPES), required=True, dest="record_type")
    _connection_arguments(put)
    put.set_defaults(_parser=put)
    get = actions.add_parser("get", help="read, decrypt and save a record (the read is audited)")
    get.add_argument("record_id", type=hex_id("record id"), metavar="ID")
    get.add_argument("--out", type=home_path, required=True, metavar="FILE", help="new file")
    _connection_arguments(get)
    get.set_defaults(_parser=get)
    amend = actions.add_parser(
        "amend", help="store a new record that supersedes an earlier one (records.md §11)"
    )
    amend.add_argument("file", type=home_path, metavar="FILE", help="the new record (plaintext)")
    amend.add_argument("--supersedes", type=hex_id("record id"), required=True, metavar="ID")
    amend.add_argument("--reason", choices=sorted(AMENDMENT_REASONS), required=True)
    amend.add_argument("--note", type=bounded_text(AMENDMENT_NOTE_MAX_BYTES), default="")
    amend.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    amend.add_argument("--type", choices=sorted(RECORD_TYPES), required=True, dest="record_type")
    _connection_arguments(amend)
    amend.set_defaults(_parser=amend)
    history = actions.add_parser("history", help="a record's amendment history")
    history.add_argument("record_id", type=hex_id("record id"), metavar="ID")
    _connection_arguments(history)
    history.set_defaults(_parser=history)


@command("record", "store or read an encrypted medical record", arguments=_record_arguments)
def record(args: argparse.Namespace) -> int:
    if args.record_action == "history":
        _print_json(_with_client(args, lambda client: client.record_history(args.record_id)))
        return 0
    if args.record_action in ("put", "amend"):
        plaintext = _read_bounded_file(args.file, DEFAULT_MAX_PLAINTEXT_BYTES)
        record_type = RECORD_TYPES[args.record_type]
        if args.record_action == "put":
            stored = _with_client(
                args, lambda client: client.put_record(plaintext, args.patient, record_type)
            )
        else:
            stored = _with_client(
                args,
                lambda client: client.amend_record(
                    plaintext,
                    args.patient,
                    record_type,
                    args.supersedes,
                    AMENDMENT_REASONS[args.reason],
                    args.note,
                ),
            )
            print(f"{args.reason} of {args.supersedes.hex()}")
        print(f"record {stored.record_id.hex()}")
        print(f"  anchored at height {stored.height} by tx {stored.anchor_tx_id.hex()}")
        print(f"  cid {stored.cid_text}, {stored.size_bytes} bytes of ciphertext")
        print(f"  kept by {', '.join(stored.custodians)}")
        for organization_id, reason in stored.custody_failures.items():
            print(f"  NOT kept by {organization_id}: {reason}")
        return 0
    if args.out.exists():
        raise CommandError(f"{args.out}: already exists; refusing to overwrite it")
    read = _with_client(args, lambda client: client.get_record(args.record_id))
    _write_new_private_file(args.out, read.plaintext)
    print(f"wrote {len(read.plaintext)} bytes to {args.out}")
    print(f"  read recorded on chain by tx {read.access_event_tx_id.hex()}")
    if read.status != "current" or read.superseded_by:
        print(f"  status {read.status}; amended by:")
        for record_id, reason in read.superseded_by:
            print(f"    {record_id.hex()} ({reason})")
    return 0


# ---- consent -------------------------------------------------------------------------------


def _grant_arguments(parser: argparse.ArgumentParser) -> None:
    _one_target(parser, "one record (its key is re-wrapped)", "all of a patient's records")
    grantee = parser.add_mutually_exclusive_group(required=True)
    grantee.add_argument("--to-member", type=hex_id("member key"), metavar="KEY")
    grantee.add_argument("--to-organization", type=organization_id, metavar="ID")
    parser.add_argument(
        "--grantee-encryption-key",
        type=hex_id("grantee encryption key"),
        metavar="HEX",
        help="the organisation's X25519 key (needed for --record with --to-organization)",
    )
    parser.add_argument(
        "--expires-ms",
        type=bounded_integer(0, U64_MAX),
        default=0,
        metavar="MS",
        help="expiry as Unix time in milliseconds (default 0: no expiry)",
    )
    _connection_arguments(parser)


@command("grant", "grant access to a record or to a patient's records", arguments=_grant_arguments)
def grant(args: argparse.Namespace) -> int:
    if args.record and args.to_organization and args.grantee_encryption_key is None:
        raise UsageError("--record with --to-organization needs --grantee-encryption-key")
    committed = _with_client(
        args,
        lambda client: client.grant(
            record_id=args.record,
            patient_id=args.patient,
            grantee_member=args.to_member,
            grantee_organization=args.to_organization,
            grantee_encryption_key=args.grantee_encryption_key,
            expires_at_ms=args.expires_ms,
        ),
    )
    print(f"grant {committed.tx_id.hex()} in force from height {committed.height}")
    return 0


def _revoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grant_id", type=hex_id("grant id"), metavar="GRANT_ID")
    _connection_arguments(parser)


@command("revoke", "revoke a grant (by its id)", arguments=_revoke_arguments)
def revoke(args: argparse.Namespace) -> int:
    committed = _with_client(args, lambda client: client.revoke(args.grant_id))
    print(f"grant {args.grant_id.hex()} revoked at height {committed.height}")
    return 0


def _listing_arguments(parser: argparse.ArgumentParser) -> None:
    _one_target(parser, "one record", "a patient")
    _connection_arguments(parser)


@command("grants", "list the grants of a patient or a record", arguments=_listing_arguments)
def grants(args: argparse.Namespace) -> int:
    listing = _with_client(
        args, lambda client: client.grants(patient_id=args.patient, record_id=args.record)
    )
    _print_json(listing)
    return 0


def _page_arguments(parser: argparse.ArgumentParser, cursor: str, order: str) -> None:
    pages = parser.add_mutually_exclusive_group()
    pages.add_argument(
        f"--{cursor}",
        metavar="CURSOR",
        help=f"continue {order} from a previous page's next cursor",
    )
    pages.add_argument("--all", action="store_true", help="every page, back to the first item")
    parser.add_argument(
        "--limit",
        type=bounded_integer(1, MAX_TRAIL_LIMIT),
        default=DEFAULT_TRAIL_LIMIT,
        metavar="N",
        help=f"items per page (default {DEFAULT_TRAIL_LIMIT})",
    )


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    _listing_arguments(parser)
    _page_arguments(parser, "before", "newest first")


@command(
    "audit",
    "list the access trail of a patient or a record, newest first (one page, or --all)",
    arguments=_audit_arguments,
)
def audit(args: argparse.Namespace) -> int:
    target = {"patient_id": args.patient, "record_id": args.record}
    if args.all:
        events = _with_client(args, lambda client: client.all_access_events(**target))
        _print_json({"events": events, "next": None})
        return 0
    trail = _with_client(
        args,
        lambda client: client.access_events(**target, limit=args.limit, before=args.before),
    )
    _print_json(trail)
    return 0


def _patient_listing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    _connection_arguments(parser)
    _page_arguments(parser, "after", "oldest first")


@command(
    "records",
    "list a patient's records (anchors, not content), oldest first (one page, or --all)",
    arguments=_patient_listing_arguments,
)
def records(args: argparse.Namespace) -> int:
    if args.all:
        found = _with_client(args, lambda client: client.all_patient_records(args.patient))
        _print_json({"patient_id": args.patient.hex(), "records": found, "next": None})
        return 0
    page = _with_client(
        args,
        lambda client: client.patient_records(args.patient, after=args.after, limit=args.limit),
    )
    _print_json(page)
    return 0


@command(
    "consents",
    "list a patient's consent history with each grant's status, oldest first (one page, or --all)",
    arguments=_patient_listing_arguments,
)
def consents(args: argparse.Namespace) -> int:
    if args.all:
        found = _with_client(args, lambda client: client.all_patient_consents(args.patient))
        _print_json({"patient_id": args.patient.hex(), "consents": found, "next": None})
        return 0
    page = _with_client(
        args,
        lambda client: client.patient_consents(args.patient, after=args.after, limit=args.limit),
    )
    _print_json(page)
    return 0


# ---- emergency access and erasure ----------------------------------------------------------


def _break_glass_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    parser.add_argument("--record", type=hex_id("record id"), metavar="ID", help="only this one")
    parser.add_argument("--reason", type=break_glass_reason, required=True, metavar="TEXT")
    parser.add_argument(
        "--duration-ms",
        type=bounded_integer(1, BREAK_GLASS_MAX_DURATION_MS),
        required=True,
        metavar="N",
    )
    _connection_arguments(parser)


@command(
    "break-glass",
    "emergency access to a patient's records (time-boxed, flagged for review)",
    arguments=_break_glass_arguments,
)
def break_glass(args: argparse.Namespace) -> int:
    committed = _with_client(
        args,
        lambda client: client.break_glass(args.patient, args.reason, args.duration_ms, args.record),
    )
    print(f"break-glass {committed.tx_id.hex()} open for {args.duration_ms} ms, flagged")
    return 0


def _reviews_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="review_action", metavar="<action>", required=True)
    listing = actions.add_parser("list", help="reviews, oldest first")
    listing.add_argument("--status", choices=("open", "closed"))
    listing.add_argument("--after", type=bounded_integer(0, U64_MAX), metavar="SEQUENCE")
    listing.add_argument("--limit", type=bounded_integer(1, 1_000), default=100, metavar="N")
    show = actions.add_parser("show", help="one review")
    show.add_argument("review_id", type=hex_id("review id"), metavar="ID")
    close = actions.add_parser("close", help="close an open review with an outcome")
    close.add_argument("review_id", type=hex_id("review id"), metavar="ID")
    close.add_argument("--outcome", choices=sorted(REVIEW_OUTCOMES), required=True)
    close.add_argument("--note", type=bounded_text(REVIEW_NOTE_MAX_BYTES), default="")
    for action in (listing, show, close):
        _connection_arguments(action)
        action.set_defaults(_parser=action)


@command(
    "reviews",
    "auditors: list, show and close break-glass and re-enrolment reviews",
    arguments=_reviews_arguments,
)
def reviews(args: argparse.Namespace) -> int:
    if args.review_action == "list":
        _print_json(
            _with_client(args, lambda client: client.reviews(args.status, args.after, args.limit))
        )
        return 0
    if args.review_action == "show":
        _print_json(_with_client(args, lambda client: client.review(args.review_id)))
        return 0
    committed = _with_client(
        args,
        lambda client: client.close_review(
            args.review_id, REVIEW_OUTCOMES[args.outcome], args.note
        ),
    )
    print(f"review {args.review_id.hex()} closed ({args.outcome}) at height {committed.height}")
    return 0


def _erase_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record_id", type=hex_id("record id"), metavar="ID")
    parser.add_argument("--reason", choices=sorted(ERASURE_REASONS), required=True)
    _connection_arguments(parser)


@command("erase", "erase a record (ciphertext and keys deleted)", arguments=_erase_arguments)
def erase(args: argparse.Namespace) -> int:
    committed = _with_client(
        args, lambda client: client.erase(args.record_id, ERASURE_REASONS[args.reason])
    )
    print(f"record {args.record_id.hex()} erased at height {committed.height}")
    return 0


# ---- FHIR and the patient's export ---------------------------------------------------------

FHIR_TYPE_PATTERN = re.compile(r"[A-Z][A-Za-z]{1,63}")
MAX_FHIR_FILE_BYTES = 16 * 1024 * 1024


def fhir_type(text: str) -> str:
    if not FHIR_TYPE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a FHIR resource type: {text!r}")
    return text


def search_parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"a search parameter is NAME=VALUE, got {text!r}")
    return name, value


def _fhir_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="fhir_action", metavar="<action>", required=True)
    read = actions.add_parser("read", help="GET /fhir/TYPE/ID (JSON on stdout)")
    read.add_argument("resource_type", type=fhir_type, metavar="TYPE")
    read.add_argument("resource_id", metavar="ID")
    search = actions.add_parser("search", help="GET /fhir/TYPE?NAME=VALUE... (a Bundle)")
    search.add_argument("resource_type", type=fhir_type, metavar="TYPE")
    search.add_argument("parameters", type=search_parameter, nargs="*", metavar="NAME=VALUE")
    put = actions.add_parser("put", help="store a FHIR resource (JSON file) as a sealed record")
    put.add_argument("file", type=home_path, metavar="FILE", help="the resource, JSON")
    put.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    put.add_argument("--type", choices=sorted(RECORD_TYPES), dest="record_type")
    get = actions.add_parser("get", help="read a record holding a FHIR resource (audited)")
    get.add_argument("record_id", type=hex_id("record id"), metavar="ID")
    for action in (read, search, put, get):
        _connection_arguments(action)
        action.set_defaults(_parser=action)


@command(
    "fhir", "the node's FHIR R4 facade, and FHIR resources as records", arguments=_fhir_arguments
)
def fhir(args: argparse.Namespace) -> int:
    if args.fhir_action == "read":
        _print_json(
            _with_client(
                args, lambda client: client.fhir_read(args.resource_type, args.resource_id)
            )
        )
    elif args.fhir_action == "search":
        parameters = dict(args.parameters)
        _print_json(
            _with_client(args, lambda client: client.fhir_search(args.resource_type, **parameters))
        )
    elif args.fhir_action == "put":
        try:
            resource = json.loads(_read_bounded_file(args.file, MAX_FHIR_FILE_BYTES))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CommandError(f"{args.file}: not JSON") from None
        record_type = RECORD_TYPES[args.record_type] if args.record_type else None
        # A value that is no FHIR resource is a NotFhirError (a ValueError): one line, exit 1.
        stored = _with_client(
            args, lambda client: client.store_fhir_resource(resource, args.patient, record_type)
        )
        print(f"record {stored.record_id.hex()} anchored at height {stored.height}")
    else:
        _print_json(_with_client(args, lambda client: client.read_fhir_resource(args.record_id)))
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", type=hex_id("patient id"), required=True, metavar="HEX")
    parser.add_argument(
        "--out", type=home_path, required=True, metavar="DIR", help="a new or empty directory"
    )
    _connection_arguments(parser)


@command(
    "export",
    "a patient's records decrypted, with a FHIR Bundle of them and their access trail",
    arguments=_export_arguments,
)
def export(args: argparse.Namespace) -> int:
    try:
        summary = _with_client(args, lambda client: client.export_patient(args.patient, args.out))
    except FileExistsError as error:
        raise CommandError(str(error)) from None
    print(f"exported {len(summary.files)} of {summary.records} records to {summary.out_dir}")
    print(
        f"  {summary.fhir_resources} FHIR resources, {summary.consents} consents, "
        f"{summary.access_events} access events in {summary.bundle_path}"
    )
    for record_id, reason in summary.failures.items():
        print(f"  NOT exported {record_id}: {reason}")
    return 0 if not summary.failures else 1
