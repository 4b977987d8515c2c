"""Where a record's ciphertext should be pinned: a pure function of committed chain state.

Every node computes the same ordering of organisations for a record
(`docs/spec/records.md` §10):

1. the record's custodians, in their order (today the author's organisation; §9's custody set
   once the anchor carries one): they serve the record, so they hold the blob;
2. the organisation that registered the patient, if not already listed;
3. every other registered organisation, ordered by SHA-256(label ‖ record_id ‖ organisation
   id), ascending (rendezvous hashing: adding or removing an organisation moves only the
   records it is placed on).

The holders are the first `factor` organisations of that order that are not known to be down.
With every node up, that is the first `factor` of the order: nothing but chain state decides.
When a holder's IPFS node is down, the next organisation in the order takes its place, so the
record keeps `factor` reachable copies; when it comes back, both keep their copy (an extra
copy is harmless; only erasure removes a pin).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence

from emrchain.schema import RecordType

PLACEMENT_LABEL = b"emrchain/replica-placement/v1"


def placement_order(
    record_id: bytes,
    custodians: Sequence[str],
    patient_organization: str | None,
    organizations: Iterable[str],
) -> list[str]:
    """Every organisation, in the order a record's copies are placed on them."""
    order: list[str] = []
    for organization_id in (*custodians, patient_organization):
        if organization_id and organization_id not in order:
            order.append(organization_id)
    placed = set(order)
    rest = sorted(
        (
            organization_id
            for organization_id in set(organizations)
            if organization_id not in placed
        ),
        key=lambda organization_id: hashlib.sha256(
            PLACEMENT_LABEL + record_id + organization_id.encode("ascii")
        ).digest(),
    )
    return order + rest


def holders(order: Sequence[str], factor: int, down: Collection[str] = ()) -> list[str]:
    """The first `factor` organisations of `order` that are not `down`."""
    if factor < 1:
        raise ValueError("a replication factor is at least 1")
    return [organization_id for organization_id in order if organization_id not in down][:factor]


def factor_of(record_type: int, default_factor: int, factors_by_type: Mapping[str, int]) -> int:
    """The replication factor of a record type (`[records] replication_factor_by_type`)."""
    try:
        name = RecordType(record_type).name.lower()
    except ValueError:
        return default_factor
    return factors_by_type.get(name, default_factor)
