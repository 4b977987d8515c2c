"""Typed config settings: each key declares its documentation and the values it accepts.

A section is a frozen dataclass whose fields carry a `Setting` in their metadata (see
`setting()`); the loader, the TOML writer, the example file and the reference documentation
all read these declarations, so a key's rules are written exactly once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from emrchain.config.address import Address, PeerAddress, parse_address, parse_peer_address

TomlValue = bool | int | str | list[str]
SETTING_METADATA_KEY = "emrchain.setting"


def toml_type_name(raw: object) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return names.get(type(raw), "table" if isinstance(raw, dict) else type(raw).__name__)


class Kind(Protocol):
    """What a setting accepts; `parse` raises ValueError naming the allowed values."""

    def parse(self, raw: object) -> Any: ...

    def to_toml(self, value: Any) -> TomlValue: ...

    def describe(self) -> str:
        """Type and allowed values, for documentation and comments."""
        ...


@dataclass(frozen=True)
class Integer:
    """An integer within minimum..maximum (both included), counted in `unit`."""

    minimum: int
    maximum: int
    unit: str

    def parse(self, raw: object) -> int:
        # bool is a subclass of int in Python; TOML `true` must not pass as 1.
        if type(raw) is not int:
            raise ValueError(
                f"must be an integer within {self.minimum}..{self.maximum}, "
                f"got {toml_type_name(raw)} {raw!r}"
            )
        if not self.minimum <= raw <= self.maximum:
            raise ValueError(f"must be within {self.minimum}..{self.maximum}, got {raw}")
        return raw

    def to_toml(self, value: int) -> int:
        return value

    def describe(self) -> str:
        return f"integer, {self.minimum}..{self.maximum} {self.unit}"


@dataclass(frozen=True)
class Boolean:
    def parse(self, raw: object) -> bool:
        if type(raw) is not bool:
            raise ValueError(f"must be true or false, got {toml_type_name(raw)} {raw!r}")
        return raw

    def to_toml(self, value: bool) -> bool:
        return value

    def describe(self) -> str:
        return "boolean"


@dataclass(frozen=True)
class Choice:
    """One of `choices`; `declared` values are known but refused, each with its reason."""

    choices: tuple[str, ...]
    declared: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def parse(self, raw: object) -> str:
        allowed = ", ".join(f'"{choice}"' for choice in self.choices)
        if type(raw) is not str:
            raise ValueError(f"must be one of {allowed}, got {toml_type_name(raw)} {raw!r}")
        if raw in self.declared:
            raise ValueError(f'"{raw}" is not supported yet ({self.declared[raw]}); use {allowed}')
        if raw not in self.choices:
            raise ValueError(f"must be one of {allowed}, got {raw!r}")
        return raw

    def to_toml(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return "string, one of " + ", ".join(f'"{choice}"' for choice in self.choices)


@dataclass(frozen=True)
class Name:
    """A short identifier-like string, e.g. a moniker."""

    pattern: str
    explanation: str

    def parse(self, raw: object) -> str:
        if type(raw) is not str:
            raise ValueError(f"must be a string of {self.explanation}, got {toml_type_name(raw)}")
        if not re.fullmatch(self.pattern, raw):
            raise ValueError(f"must be {self.explanation}, got {raw!r}")
        return raw

    def to_toml(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return f"string, {self.explanation}"


@dataclass(frozen=True)
class HomePath:
    """A path relative to the node's home directory that cannot leave it.

    Keeping every path inside the home means `unsafe-reset-all` and `init --force` can never be
    pointed at a directory outside the node (mount other disks under the home instead).
    """

    def parse(self, raw: object) -> str:
        if type(raw) is not str:
            raise ValueError(f"must be a path relative to the home, got {toml_type_name(raw)}")
        path = PurePosixPath(raw)
        if not raw or "\\" in raw or "\x00" in raw:
            raise ValueError(f"must be a non-empty relative path with '/' separators, got {raw!r}")
        if path.is_absolute() or ".." in path.parts or path.parts in ((), (".",)):
            raise ValueError(
                f"must be a relative path inside the home (no leading '/', no '..'), got {raw!r}"
            )
        return str(path)

    def to_toml(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return "string, path relative to the home directory, inside it"


@dataclass(frozen=True)
class OptionalHomePath:
    """A `HomePath`, or empty for "not set" (a feature that is off without its file)."""

    def parse(self, raw: object) -> str:
        if raw == "":
            return ""
        return HomePath().parse(raw)

    def to_toml(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return "string, empty or a path relative to the home directory, inside it"


@dataclass(frozen=True)
class ListenAddress:
    def parse(self, raw: object) -> Address:
        if type(raw) is not str:
            raise ValueError(f'must be a string "host:port", got {toml_type_name(raw)}')
        return parse_address(raw)

    def to_toml(self, value: Address) -> str:
        return str(value)

    def describe(self) -> str:
        return 'string, "host:port" or "[ipv6]:port", port 1..65535'


@dataclass(frozen=True)
class PeerList:
    maximum_count: int

    def parse(self, raw: object) -> tuple[PeerAddress, ...]:
        if type(raw) is not list:
            raise ValueError(
                f'must be an array of "<node_id_hex>@host:port" strings, got {toml_type_name(raw)}'
            )
        if len(raw) > self.maximum_count:
            raise ValueError(f"must hold at most {self.maximum_count} peers, got {len(raw)}")
        peers: list[PeerAddress] = []
        for index, entry in enumerate(raw):
            if type(entry) is not str:
                raise ValueError(f"entry {index} must be a string, got {toml_type_name(entry)}")
            try:
                peer = parse_peer_address(entry)
            except ValueError as error:
                raise ValueError(f"entry {index}: {error}") from None
            if any(known.node_id == peer.node_id for known in peers):
                raise ValueError(f"entry {index}: node id {peer.node_id.hex()} is listed twice")
            peers.append(peer)
        return tuple(peers)

    def to_toml(self, value: tuple[PeerAddress, ...]) -> list[str]:
        return [str(peer) for peer in value]

    def describe(self) -> str:
        return f'array of "<node_id_hex>@host:port" strings, at most {self.maximum_count}'


@dataclass(frozen=True)
class UrlList:
    """http(s) URLs, each at most 400 characters of printable ASCII, none listed twice."""

    maximum_count: int

    def parse(self, raw: object) -> tuple[str, ...]:
        if type(raw) is not list:
            raise ValueError(
                f'must be an array of "http(s)://..." strings, got {toml_type_name(raw)}'
            )
        if len(raw) > self.maximum_count:
            raise ValueError(f"must hold at most {self.maximum_count} URLs, got {len(raw)}")
        for index, entry in enumerate(raw):
            if type(entry) is not str or not re.fullmatch(
                r"https?://[A-Za-z0-9.\[\]:_-]{1,200}(/[!-~]{0,200})?", entry
            ):
                raise ValueError(
                    f"entry {index} must be an http(s)://host:port/path URL, got {entry!r}"
                )
            if raw.index(entry) != index:
                raise ValueError(f"entry {index}: {entry} is listed twice")
        return tuple(raw)

    def to_toml(self, value: tuple[str, ...]) -> list[str]:
        return list(value)

    def describe(self) -> str:
        return f"array of at most {self.maximum_count} http(s) URLs"


@dataclass(frozen=True)
class OrganizationUrls:
    """"<organization_id>=<http(s) URL>" strings: where other organisations' nodes answer."""

    maximum_count: int

    def parse(self, raw: object) -> tuple[str, ...]:
        if type(raw) is not list:
            raise ValueError(
                f'must be an array of "<organization_id>=<url>" strings, got {toml_type_name(raw)}'
            )
        if len(raw) > self.maximum_count:
            raise ValueError(f"must hold at most {self.maximum_count} entries, got {len(raw)}")
        seen: set[str] = set()
        for index, entry in enumerate(raw):
            if type(entry) is not str or not re.fullmatch(
                r"[a-z0-9._-]{1,64}=https?://[A-Za-z0-9.\[\]:_-]{1,200}(/[!-~]{0,200})?", entry
            ):
                raise ValueError(
                    f'entry {index} must be "<organization_id>=http(s)://host:port", got {entry!r}'
                )
            organization_id = entry.split("=", 1)[0]
            if organization_id in seen:
                raise ValueError(f"entry {index}: organisation {organization_id} is listed twice")
            seen.add(organization_id)
        return tuple(raw)

    def to_toml(self, value: tuple[str, ...]) -> list[str]:
        return list(value)

    def describe(self) -> str:
        return (
            'array of "<organization_id>=http(s)://host:port" strings, '
            f"at most {self.maximum_count}"
        )


@dataclass(frozen=True)
class Setting:
    doc: str
    kind: Kind


def setting(default: Any, doc: str, kind: Kind) -> Any:
    """Declare a section field: its default, one-sentence doc and accepted values."""
    return dataclasses.field(default=default, metadata={SETTING_METADATA_KEY: Setting(doc, kind)})


def check_declared(settings: Mapping[str, Setting], values: object) -> None:
    """Raise ValueError naming the first attribute of `values` its declaration refuses.

    Subsystem configs validate their fields with this, so their bounds are the loader's.
    """
    for name, spec in settings.items():
        try:
            spec.kind.parse(getattr(values, name))
        except ValueError as error:
            raise ValueError(f"{name} {error}") from None


def settings_of(section_class: type) -> dict[str, Setting]:
    """The settings declared on a section dataclass, in declaration order."""
    return {
        field.name: field.metadata[SETTING_METADATA_KEY]
        for field in dataclasses.fields(section_class)
    }
