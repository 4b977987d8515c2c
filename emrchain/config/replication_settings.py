"""The value kinds of the `[records] replication_*` settings (declared in `config/node.py`).

Kept apart from `settings.py` because they know the record types and the URL shape of an IPFS
RPC API, which the generic kinds do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emrchain.config.settings import toml_type_name
from emrchain.schema import RecordType

MAX_REPLICATION_FACTOR = 64
"""More copies than any network of hospitals has nodes."""

_ORGANIZATION_PATTERN = r"[a-z0-9._-]{1,64}"
_IPFS_URL_PATTERN = r"https?://[A-Za-z0-9.\-\[\]:]{1,200}(/[A-Za-z0-9._/-]{0,200})?"


def _record_type_names() -> dict[str, RecordType]:
    return {record_type.name.lower(): record_type for record_type in RecordType}


@dataclass(frozen=True)
class FactorsByType:
    """`["imaging=3", "lab_result=2"]`: a replication factor for some record types."""

    def parse(self, raw: object) -> tuple[tuple[str, int], ...]:
        if type(raw) is not list:
            raise ValueError(f'must be an array of "record_type=copies", got {toml_type_name(raw)}')
        names = _record_type_names()
        factors: dict[str, int] = {}
        for index, entry in enumerate(raw):
            if type(entry) is not str or not re.fullmatch(r"[a-z_]{1,32}=[0-9]{1,2}", entry):
                raise ValueError(f'entry {index} must be "record_type=copies", got {entry!r}')
            name, copies_text = entry.split("=")
            if name not in names:
                raise ValueError(
                    f"entry {index}: unknown record type {name!r} (one of {', '.join(names)})"
                )
            copies = int(copies_text)
            if not 1 <= copies <= MAX_REPLICATION_FACTOR:
                raise ValueError(f"entry {index}: copies must be 1..{MAX_REPLICATION_FACTOR}")
            if name in factors:
                raise ValueError(f"entry {index}: record type {name!r} is listed twice")
            factors[name] = copies
        return tuple(factors.items())

    def to_toml(self, value: tuple[tuple[str, int], ...]) -> list[str]:
        return [f"{name}={copies}" for name, copies in value]

    def describe(self) -> str:
        return (
            'array of "record_type=copies" strings (record types in lower case, e.g. '
            f'"imaging=3"; copies 1..{MAX_REPLICATION_FACTOR})'
        )


@dataclass(frozen=True)
class IpfsPeers:
    """`["hospital-2=http://10.0.0.2:5001"]`: other organisations' IPFS RPC APIs."""

    maximum_count: int

    def parse(self, raw: object) -> tuple[tuple[str, str], ...]:
        if type(raw) is not list:
            raise ValueError(f'must be an array of "organisation=url", got {toml_type_name(raw)}')
        if len(raw) > self.maximum_count:
            raise ValueError(f"must hold at most {self.maximum_count} entries, got {len(raw)}")
        peers: dict[str, str] = {}
        for index, entry in enumerate(raw):
            if type(entry) is not str or "=" not in entry:
                raise ValueError(f'entry {index} must be "organisation=url", got {entry!r}')
            organization_id, url = entry.split("=", 1)
            if not re.fullmatch(_ORGANIZATION_PATTERN, organization_id):
                raise ValueError(f"entry {index}: {organization_id!r} is not an organisation id")
            if not re.fullmatch(_IPFS_URL_PATTERN, url):
                raise ValueError(
                    f"entry {index}: {url!r} is not an http:// or https:// URL of an IPFS RPC "
                    "API without a user or password"
                )
            if organization_id in peers:
                raise ValueError(f"entry {index}: organisation {organization_id!r} listed twice")
            peers[organization_id] = url
        return tuple(peers.items())

    def to_toml(self, value: tuple[tuple[str, str], ...]) -> list[str]:
        return [f"{organization_id}={url}" for organization_id, url in value]

    def describe(self) -> str:
        return (
            'array of "organisation_id=http(s)://host:port" strings (another organisation\'s '
            f"IPFS RPC API), at most {self.maximum_count}"
        )
