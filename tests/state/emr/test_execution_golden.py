"""Golden EMR execution: a fixed multi-block workload whose app hashes and tx results are pinned.

The digests below were computed by the execution code as it was before the anchor hot-path
work of issue #7 (generic `Reader`/`Writer` codecs, no caches). Any optimisation of execution
must leave every app hash, every result code and every result message byte-identical, so this
test pins all three over blocks that exercise what the fast paths and caches touch: many anchors
per sender in one block, duplicates within a block, refusals after reads (whose overlay is
dropped), a key rotation and a revocation followed in the same block and in later blocks by
anchors from the affected members, and consent, access and erasure around them.

Run it under both core twins (`EMRCHAIN_PUREPYTHON=1`); the digests must not depend on which
loaded.

Re-pinned once, on purpose, for issue #15's consent rules (membership of the author
organisation no longer authorises a read): the only result that moved is block 6's read by
A_COLLEAGUE, now ACCESS_DENIED (69); blocks 1-5 kept their app hashes, every other result its
code and message (compared block by block against the previous code).
"""

from __future__ import annotations

import hashlib

import pytest

from emrchain.schema import ErasureReason, GrantScope, Role, TxKind, codec
from emrchain.state.emr.context import transaction_id
from tests.state.chain import CHAIN_ID, signer
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    A_COLLEAGUE,
    A_NURSE,
    B_ADMIN,
    B_CLINICIAN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT_ID,
    PATIENT,
    PATIENT_ID,
    STRANGER,
    World,
    access_fields,
    actor,
    anchor_fields,
    break_glass_fields,
    digest,
    erase_fields,
    grant_fields,
    member_fields,
    node_fields,
)

ANCHOR = TxKind.ANCHOR_RECORD

# Changed by the history logs (0x33 record index, 0x43/0x44 consent history, trails as logs)
# and the review queue's open/closed state (0x68, 0x69): every break-glass writes both.
# Changed again by the grantee index (0x45): every grant in force has an entry under its grantee
# (issue #23, "shared with me"); anchor path and generic path agree.
EXPECTED_APP_HASH = "a1060231b0082b5848bb889b3409436bf73be36bb4c037bd2e9daa33aad0f249"
"""App hash after the last block of `run_workload`."""
EXPECTED_RESULTS_DIGEST = "2f4ef0774251aa1bf70e81e91f4351ae4cda1c13fc87b311248bd78eca9f744b"
"""SHA-256 over every block's app hash and every (code, message) of `run_workload`."""


def _record(label: str) -> bytes:
    return digest("golden-record/" + label)


def run_workload(*, anchor_path: bool = True) -> World:
    """Blocks of anchors and the rules around them; returns the world after the last block.
    `anchor_path` runs the node's application with or without its compiled accept path."""
    world = World(anchor_path=anchor_path)
    nurse_new = signer("golden/nurse-rotated")
    late = actor("golden-late-clinician")
    # 1: many anchors per sender, two patients, an admin anchor, refusals of every kind an
    # anchor can get (role, membership, duplicate in the same block, unknown patient).
    block = []
    for index in range(12):
        sender = (A_CLINICIAN, A_COLLEAGUE, A_NURSE)[index % 3]
        patient = (PATIENT_ID, OTHER_PATIENT_ID)[index % 2]
        block.append(world.tx(sender, ANCHOR, anchor_fields(_record(f"1/{index}"), patient)))
    block.append(world.tx(A_ADMIN, ANCHOR, anchor_fields(_record("1/admin"))))
    block.append(world.tx(PATIENT, ANCHOR, anchor_fields(_record("1/by-patient"))))
    block.append(world.tx(A_AUDITOR, ANCHOR, anchor_fields(_record("1/by-auditor"))))
    block.append(world.tx(STRANGER, ANCHOR, anchor_fields(_record("1/by-stranger"))))
    block.append(world.tx(A_CLINICIAN, ANCHOR, anchor_fields(_record("1/0"))))  # duplicate
    block.append(world.tx(A_CLINICIAN, ANCHOR, anchor_fields(_record("1/x"), digest("nobody"))))
    b_fields = anchor_fields(_record("1/b"), author_organization=HOSPITAL_B)
    block.append(world.tx(B_CLINICIAN, ANCHOR, b_fields))
    world.block(block)
    # 2: a rotation and a revocation, each followed in the same block by anchors from the
    # member's old key, its new key and the revoked member; a new member registered and
    # anchoring in the same block.
    block = [
        world.tx(A_CLINICIAN, ANCHOR, anchor_fields(_record("2/before-rotation"))),
        world.tx(A_NURSE, TxKind.ROTATE_KEY, world.rotation_fields(A_NURSE, nurse_new)),
        world.tx(A_NURSE, ANCHOR, anchor_fields(_record("2/old-key"))),
        world.tx(nurse_new, ANCHOR, anchor_fields(_record("2/new-key"))),
        world.tx(A_COLLEAGUE, ANCHOR, anchor_fields(_record("2/before-revocation"))),
        world.tx(
            A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_COLLEAGUE.public_key, "reason": "x"}
        ),
        world.tx(A_COLLEAGUE, ANCHOR, anchor_fields(_record("2/after-revocation"))),
        world.tx(
            A_ADMIN, TxKind.REGISTER_MEMBER, member_fields("hospital-a", late, Role.CLINICIAN)
        ),
        world.tx(late, ANCHOR, anchor_fields(_record("2/late"), OTHER_PATIENT_ID)),
    ]
    world.block(block)
    # 3: the same members in a later block (state committed, nothing pending).
    world.block(
        [
            world.tx(A_NURSE, ANCHOR, anchor_fields(_record("3/old-key"))),
            world.tx(nurse_new, ANCHOR, anchor_fields(_record("3/new-key"))),
            world.tx(A_COLLEAGUE, ANCHOR, anchor_fields(_record("3/revoked"))),
            world.tx(late, ANCHOR, anchor_fields(_record("3/late"))),
            world.tx(
                B_ADMIN, ANCHOR, anchor_fields(_record("3/b-admin"), author_organization=HOSPITAL_B)
            ),
        ]
    )
    # 4: consent, reads, break-glass and erasure around anchored records.
    record = _record("1/0")
    world.block(
        [
            world.tx(PATIENT, TxKind.GRANT_ACCESS, grant_fields(record)),
            world.tx(
                PATIENT,
                TxKind.GRANT_ACCESS,
                grant_fields(
                    PATIENT_ID, scope=GrantScope.PATIENT, organization="hospital-b", member=None
                ),
            ),
            world.tx(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields(record)),
            world.tx(nurse_new, TxKind.ACCESS_EVENT, access_fields(record)),
            world.tx(A_COLLEAGUE, TxKind.ACCESS_EVENT, access_fields(record)),
            world.tx(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields()),
            world.tx(A_CLINICIAN, ANCHOR, anchor_fields(_record("4/a"))),
        ]
    )
    grant_id = _last_tx_id(world, 0)
    world.block(
        [
            world.tx(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": grant_id}),
            world.tx(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields(record)),
            world.tx(PATIENT, TxKind.ERASE_RECORD, erase_fields(record)),
            world.tx(
                A_ADMIN,
                TxKind.ERASE_RECORD,
                erase_fields(_record("1/2"), ErasureReason.ENTERED_IN_ERROR),
            ),
            world.tx(A_CLINICIAN, ANCHOR, anchor_fields(record)),  # erased: still a duplicate
            world.tx(A_CLINICIAN, ANCHOR, anchor_fields(_record("5/a"))),
        ]
    )
    return world


def _last_tx_id(world: World, index: int) -> bytes:
    raw = world.chain.built[-1].block.txs[index]
    return transaction_id(codec.decode_transaction(raw, CHAIN_ID, 4096))


def results_digest(world: World) -> str:
    hasher = hashlib.sha256()
    for built in world.chain.built:
        hasher.update(built.result.app_hash)
        for result in built.result.tx_results:
            message = result.message.encode("utf-8")
            hasher.update(result.code.to_bytes(2, "big") + len(message).to_bytes(2, "big"))
            hasher.update(message)
    return hasher.hexdigest()


@pytest.mark.parametrize("anchor_path", [True, False], ids=["accept-path", "general-only"])
def test_golden_workload_app_hash_and_results_are_unchanged(anchor_path: bool) -> None:
    world = run_workload(anchor_path=anchor_path)
    codes = [r.code for built in world.chain.built[-5:] for r in built.result.tx_results]
    assert 0 in codes and len(set(codes)) > 5  # the workload exercises refusals, not only OKs
    assert world.state.last_app_hash().hex() == EXPECTED_APP_HASH
    assert results_digest(world) == EXPECTED_RESULTS_DIGEST
    # The compiled ANCHOR_RECORD path took part (or, turned off, did not): the pinned digests
    # hold for both. The workload's genesis leaves k = 1, so anchors naming their author's
    # organisation alone take the path.
    hits = world.chain.app.accept_path_hits
    assert hits > 20 if anchor_path else hits == 0


def test_golden_workload_is_reproducible_in_one_process() -> None:
    """Running it twice in one process (caches warm the second time) gives the same chain."""
    first, second = run_workload(), run_workload()
    assert results_digest(first) == results_digest(second)
    assert list(first.state.items()) == list(second.state.items())


def _declared_namespaces() -> set[int]:
    """The first byte of every key kind `emrchain/state/keys.py` declares."""
    from emrchain.state import keys

    return {
        value[0]
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, bytes) and len(value) == 1
    }


def test_every_kind_writes_only_declared_keyspaces_and_never_the_retired_0x12() -> None:
    """The retired anchor keyspace (0x12, the first milestone's rules) is dead: the golden
    workload, plus the kinds it lacks, applies every transaction kind the node runs, and no
    block writes a key outside the namespaces `keys.py` declares, 0x12 not among them."""
    from tests.state.chain import validator_update_tx

    world = run_workload()
    organization = {"organization_id": "hospital-c", "name": "C", "encryption_key": digest("c")}
    newcomer = signer("golden/validator").public_key
    node = node_fields(signer("golden/node"), HOSPITAL_A, "10.0.0.9:26656")
    amendment = world.anchor_fields(_record("5/amendment"))
    amendment.update(supersedes=_record("1/4"), reason=1, note="")
    amend = world.tx(A_CLINICIAN, TxKind.AMEND_RECORD, amendment)  # nonces in block order
    glass = world.tx(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    review_id = transaction_id(codec.decode_transaction(glass, CHAIN_ID, 65_000))
    closing = {"review_id": review_id, "outcome": 1, "note": ""}
    study_id = digest("golden/study")
    study = {
        "study_id": study_id,
        "purpose": "golden",
        "query_types": 1 << 1,
        "epsilon_total": 1_000_000,
        "delta_total": 1_000,
        "participants": b"\x01" + bytes([len(HOSPITAL_A)]) + HOSPITAL_A.encode(),
        "expires_at_ms": 1 << 62,
    }
    query = {
        "study_id": study_id,
        "query_id": digest("golden/query"),
        "query_type": 1,
        "measure": "4548-4",
        "lower_milli": 0,
        "upper_milli": 0,
        "bins": 0,
        "epsilon": 1_000,
        "delta": 1,
    }
    result = {**{name: query[name] for name in ("study_id", "query_id")}}
    result["result_sha256"] = digest("golden/result")
    world.block(
        [
            world.tx(A_ADMIN, TxKind.REGISTER_ORGANIZATION, organization),
            world.tx(A_ADMIN, TxKind.REGISTER_NODE, node),
            world.tx(A_ADMIN, TxKind.REMOVE_NODE, {"node_key": node["node_key"]}),
        ]
        + [validator_update_tx(signer(index), 1, newcomer, 1, 1) for index in range(3)]
        # Hospital A, the custodian of a record the workload erased, confirms its erasure.
        + [world.tx(A_ADMIN, TxKind.ERASURE_RECEIPT, {"record_id": _record("1/2")})]
        # A correction of a live record, and a break-glass closed by an auditor.
        + [amend, glass, world.tx(A_AUDITOR, TxKind.CLOSE_REVIEW, closing)]
        # A study from proposal to closure, and a patient's research consent.
        + [
            world.tx(A_CLINICIAN, TxKind.PROPOSE_STUDY, study),
            world.tx(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": study_id}),
            world.tx(A_CLINICIAN, TxKind.STUDY_QUERY, query),
            world.tx(A_CLINICIAN, TxKind.STUDY_RESULT, result),
            world.tx(A_CLINICIAN, TxKind.CLOSE_STUDY, {"study_id": study_id}),
            world.tx(PATIENT, TxKind.RESEARCH_CONSENT, {"choice": 1}),
        ]
    )
    applied = {
        codec.decode_transaction(raw, CHAIN_ID, 65_000).kind
        for built in world.chain.built
        for raw, result in zip(built.block.txs, built.result.tx_results, strict=True)
        if result.code == 0
    }
    assert applied == set(TxKind)
    declared = _declared_namespaces()
    assert 0x12 not in declared and {0x01, 0x10, 0x22, 0x30} <= declared
    written = {key[0] for built in world.chain.built for key in built.result.writes}
    written |= {key[0] for key in world.chain.genesis.writes}
    assert written <= declared, sorted(hex(byte) for byte in written - declared)
    assert not any(key[:1] == b"\x12" for key, _ in world.state.items())
