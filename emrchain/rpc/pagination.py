"""Pages of the listings (`docs/spec/rpc.md` §Pagination): `?limit=` and the `next` cursor.

A cursor names a position in one append-only log of state (a patient's records, consents or
access trail, a record's access trail): `<sequence>.<tag>`, the tag being the first 8 bytes of
SHA-256 over the listing's name, its target id and the sequence. Any node computes the same
cursor (no secret, no session), and a cursor edited by hand or taken from another listing does
not check: 400 `bad_cursor`, not a page of something else. The tag is an integrity check, not
access control: every page is authorised on its own.
"""

from __future__ import annotations

import hashlib
import re

from aiohttp import web

from emrchain.api.parse import decimal
from emrchain.rpc.errors import RpcError

_TAG_BYTES = 8
_CURSOR = re.compile(r"([0-9]{1,20})\.([0-9a-f]{16})")
_U64_MAX = (1 << 64) - 1


def _tag(listing: str, target: bytes, sequence: int) -> str:
    material = b"emrchain/cursor\x00" + listing.encode("ascii") + b"\x00" + target
    return hashlib.sha256(material + sequence.to_bytes(8, "big")).digest()[:_TAG_BYTES].hex()


def cursor(listing: str, target: bytes, sequence: int) -> str:
    """The cursor of position `sequence` in the log `listing` of `target`."""
    return f"{sequence}.{_tag(listing, target, sequence)}"


def cursor_sequence(text: str | None, listing: str, target: bytes) -> int | None:
    """The sequence a request's cursor names (None: no cursor given); 400 `bad_cursor` for
    one that is malformed or was not made for this listing of this target."""
    if text is None:
        return None
    found = _CURSOR.fullmatch(text)
    if found is None or int(found[1]) > _U64_MAX:
        raise RpcError(
            400, "bad_cursor", "a cursor is <sequence>.<16 hex digits>, as `next` gave it"
        )
    sequence = int(found[1])
    if found[2] != _tag(listing, target, sequence):
        raise RpcError(
            400, "bad_cursor", "this cursor was not issued for this listing (edited or another's)"
        )
    return sequence


def out_of_range(error: ValueError) -> RpcError:
    """A well-formed cursor past the end of the log (another chain's, or a state rolled back)."""
    return RpcError(400, "cursor_out_of_range", f"the cursor is past this listing: {error}")


def page_limit(request: web.Request, default: int, maximum: int) -> int:
    """`?limit=`: 1..maximum, `default` when absent; 400 `bad_limit` otherwise."""
    text = request.query.get("limit")
    if text is None:
        return default
    limit = decimal(text, maximum)
    if not limit:
        raise RpcError(400, "bad_limit", f"limit must be 1..{maximum}")
    return limit
