"""Genesis organisations and their first admins, written at height 0 by `init_chain`.

A chain starts with the organisations of its genesis document, each with at least one admin
member key, so that registration can begin at height 1 (an admin registers everyone else).
Genesis admins have `registered_by` = zeros and their organisations no sponsor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.schema import IDENT_ALPHABET, MAX_CUSTODIANS, Role
from emrchain.state import keys
from emrchain.state.emr.custody import encode_organization_ids
from emrchain.state.emr.entities import (
    NO_KEY,
    KeyHistoryEntry,
    Member,
    MemberStatus,
    Organization,
)
from emrchain.state.emr.limits import (
    MAX_ORGANIZATIONS,
    ORGANIZATION_ID_MAX_BYTES,
    ORGANIZATION_NAME_MAX_BYTES,
)
from emrchain.state.emr.tables import (
    write_key_history,
    write_member,
    write_organization,
    write_organization_count,
)
from emrchain.state.view import OverlayStateView


@dataclass(frozen=True, slots=True)
class GenesisAdmin:
    member_key: bytes
    """Ed25519 public key of the admin (prime-order subgroup)."""
    encryption_key: bytes
    """X25519 public key record keys are wrapped to for this admin."""


@dataclass(frozen=True, slots=True)
class GenesisOrganization:
    organization_id: str
    name: str
    encryption_key: bytes
    admins: tuple[GenesisAdmin, ...]


class _EmptyView:
    def get(self, key: bytes) -> bytes | None:
        return None


def _check(organization: GenesisOrganization, seen_keys: set[bytes]) -> None:
    organization_id = organization.organization_id
    raw_id = organization_id.encode("ascii", "replace")
    if not 1 <= len(raw_id) <= ORGANIZATION_ID_MAX_BYTES or any(
        byte not in IDENT_ALPHABET for byte in raw_id
    ):
        raise ValueError(f"organization id {organization_id!r} is not 1..64 of [a-z0-9._-]")
    if not 1 <= len(organization.name.encode("utf-8", "replace")) <= ORGANIZATION_NAME_MAX_BYTES:
        raise ValueError(f"{organization_id}: name must be 1..128 bytes of UTF-8")
    if len(organization.encryption_key) != 32 or organization.encryption_key == NO_KEY:
        raise ValueError(f"{organization_id}: encryption key must be 32 nonzero bytes")
    if not organization.admins:
        raise ValueError(f"{organization_id}: needs at least one admin")
    for admin in organization.admins:
        if admin.member_key in seen_keys:
            raise ValueError(f"{organization_id}: admin key {admin.member_key.hex()} repeats")
        seen_keys.add(admin.member_key)
        if not is_prime_order_key(admin.member_key):
            raise ValueError(
                f"{organization_id}: admin key {admin.member_key.hex()} is not an Ed25519 key "
                "of the prime-order subgroup"
            )
        if len(admin.encryption_key) != 32 or admin.encryption_key == NO_KEY:
            raise ValueError(f"{organization_id}: admin encryption key must be 32 nonzero bytes")


def genesis_writes(
    organizations: Sequence[GenesisOrganization],
    genesis_time_ms: int,
    custody_set_size: int | None = None,
) -> dict[bytes, bytes | None]:
    """The state entries of the genesis organisations (and of the custody set size, when the
    genesis sets one); ValueError if any is invalid."""
    if custody_set_size is not None and not 1 <= custody_set_size <= MAX_CUSTODIANS:
        raise ValueError(f"custody_set_size must be 1..{MAX_CUSTODIANS}")
    if len(organizations) > MAX_ORGANIZATIONS:
        raise ValueError(f"more than {MAX_ORGANIZATIONS} organisations")
    ids = [organization.organization_id for organization in organizations]
    if len(set(ids)) != len(ids):
        raise ValueError("organization ids repeat")
    state = OverlayStateView(_EmptyView())
    seen_keys: set[bytes] = set()
    for organization in organizations:
        _check(organization, seen_keys)
        write_organization(
            state,
            Organization(
                organization_id=organization.organization_id,
                name=organization.name,
                encryption_key=organization.encryption_key,
                sponsor_organization="",
                admin_count=len(organization.admins),
                member_count=len(organization.admins),
                height=0,
                time_ms=genesis_time_ms,
            ),
        )
        for admin in organization.admins:
            write_member(
                state,
                Member(
                    member_id=admin.member_key,
                    organization_id=organization.organization_id,
                    role=Role.ADMIN,
                    patient_id=NO_KEY,
                    current_key=admin.member_key,
                    encryption_key=admin.encryption_key,
                    status=MemberStatus.ACTIVE,
                    key_count=1,
                    registered_by=NO_KEY,
                    height=0,
                ),
            )
            write_key_history(
                state, admin.member_key, 0, KeyHistoryEntry(admin.member_key, 0, genesis_time_ms)
            )
    if organizations:
        write_organization_count(state, len(organizations))
        state.put(keys.ORGANIZATION_LIST, encode_organization_ids(ids))
    if custody_set_size is not None:
        state.put(keys.CUSTODY_SET_SIZE, bytes((custody_set_size,)))
    return state.writes()
