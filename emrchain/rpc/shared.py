"""What was shared with a member (`docs/spec/rpc.md`, `access-control.md` §4): the grants in
force naming the member, or, for a clinician, naming its organisation, read from the grantee
index (state key 0x45) with a bounded prefix scan of the committed state.

The cursor is the hex of the last index key a page scanned: opaque to the client, checked to lie
under one of the caller's own prefixes (400 `bad_cursor` otherwise), so a cursor never reaches
another grantee's entries. A page scans at most `limit` entries; a grant over at consent time
but not yet pruned is skipped, so a page may hold fewer and still have a `next`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from emrchain.api.parse import lower_hex
from emrchain.rpc.auth import Authenticator
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.node_view import NodeView
from emrchain.rpc.openapi_schemas import SHARED_CURSOR_HEX
from emrchain.rpc.pagination import page_limit
from emrchain.schema import GranteeKind, GrantScope, Role
from emrchain.state import keys
from emrchain.state.emr import queries
from emrchain.state.emr.entities import Member
from emrchain.state.emr.records import Grant
from emrchain.state.emr.tables import read_grant
from emrchain.state.progress import read_progress
from emrchain.store.database import ChainDatabase
from emrchain.store.state_scan import scan_state

GRANT_ID_BYTES = 32


def grantee_prefixes(member: Member) -> list[bytes]:
    """The index prefixes of the grants that name `member`, in key order: its own, and its
    organisation's if it is a clinician (organisation grants cover clinicians only)."""
    prefixes = [keys.grantee_grants_prefix(GranteeKind.MEMBER, member.member_id)]
    if member.role == Role.CLINICIAN:
        organization = member.organization_id.encode("ascii")
        prefixes.append(keys.grantee_grants_prefix(GranteeKind.ORGANIZATION, organization))
    return sorted(prefixes)


def scan_prefixes(
    database: ChainDatabase, prefixes: list[bytes], after: bytes, limit: int
) -> list[bytes]:
    """Up to `limit` index keys under `prefixes` (sorted, none a prefix of another) after the
    key `after` (empty: from the first), in key order."""
    found: list[bytes] = []
    for prefix in prefixes:
        if after and not after.startswith(prefix) and after > prefix:
            continue  # `after` lies under a later prefix: this one is done
        start = after if after.startswith(prefix) else b""
        found += [key for key, _ in scan_state(database, prefix, start, limit - len(found))]
        if len(found) == limit:
            break
    return found


def cursor_key(text: str | None, prefixes: list[bytes]) -> bytes:
    """The index key a cursor names (empty: none given); 400 `bad_cursor` unless it is an
    index key under one of the caller's prefixes."""
    if text is None:
        return b""
    try:
        key = lower_hex(text) if len(text) == SHARED_CURSOR_HEX else b""
    except ValueError:
        key = b""
    if not any(key.startswith(p) and len(key) == len(p) + GRANT_ID_BYTES for p in prefixes):
        raise RpcError(400, "bad_cursor", "this cursor was not issued for this listing")
    return key


def shared_json(grant: Grant) -> dict[str, Any]:
    return {
        "grant_id": grant.grant_id.hex(),
        "scope": grant.scope.name.lower(),
        "record_id": grant.target.hex() if grant.scope == GrantScope.RECORD else None,
        "patient_id": grant.patient_id.hex(),
        "grantee_kind": grant.grantee_kind.name.lower(),
        "expires_time_ms": grant.expires_at_ms or None,
        "granted_height": grant.height,
    }


class SharedRoutes:
    def __init__(
        self, node: NodeView, authenticator: Authenticator, clock_ms: Callable[[], int]
    ) -> None:
        self._node = node
        self._auth = authenticator
        self._clock_ms = clock_ms
        self._page_limits = (node.config.rpc.page_limit_default, node.config.rpc.page_limit_max)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/members/{member_key}/shared", self.shared)]

    async def shared(self, request: web.Request) -> web.Response:
        """Only the member itself lists what was shared with it; anyone else gets the 404 of
        every listing, so the route does not tell whether a key is a member's."""
        member_key = hex_argument(request.match_info["member_key"], 32, "member key")
        caller = await self._auth.authenticate(request)
        limit = page_limit(request, *self._page_limits)
        view = self._node.chain.state_view()
        found = queries.member(view, member_key)
        if found is None or found.member.member_id != caller.member.member_id:
            raise RpcError(404, "not_found", "nothing here that you may list")
        prefixes = grantee_prefixes(caller.member)
        after = cursor_key(request.query.get("after"), prefixes)
        scanned = scan_prefixes(self._node.chain.database, prefixes, after, limit)
        # Judged like a read (`records.py`): an idle chain must not keep an expired grant alive.
        time_ms = max(read_progress(view)[1], self._clock_ms())
        shared = []
        for key in scanned:
            grant = read_grant(view, key[-GRANT_ID_BYTES:])
            # None: ended in a block committed between the scan and the read.
            if grant is not None and grant.in_force(time_ms):
                shared.append(shared_json(grant))
        return web.json_response(
            {
                "member_key": member_key.hex(),
                "shared": shared,
                "next": scanned[-1].hex() if len(scanned) == limit else None,
            }
        )
