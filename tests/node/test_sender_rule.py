"""The sender rule in a real node's chain (in-process, temporary home; `docs/spec/state.md` §6):
a proposed block carrying a transaction whose sender admission would refuse on the committed
state is invalid; a correct proposer's blocks never are, also when they carry REGISTER_MEMBER,
ROTATE_KEY and REVOKE_MEMBER transactions and their targets try to sign around them; and should
the pool ever hold such a transaction, the proposer leaves it out instead of losing the round."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.client import transactions
from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.devnet.workload import anchor_fields
from emrchain.devnet.workload import sender_key as workload_key
from emrchain.keystore.member import MemberIdentity, load_member_identity
from emrchain.node.node import Node
from emrchain.schema import Role, TxKind
from emrchain.state.codes import ResultCode
from emrchain.types import Block, Transaction
from tests.node.in_process import (
    CHAIN_ID,
    commit_for,
    commit_own_block,
    proposal_with,
    register_workload_senders,
    single_validator_node,
)

SEED = 21
CHAIN = CHAIN_ID.encode()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path) as opened:
        register_workload_senders(opened, senders=3, seed=SEED)
        yield opened


def identity(label: str) -> MemberIdentity:
    return MemberIdentity.from_seed(hashlib.sha256(b"sender-rule/" + label.encode()).digest())


def clinician(index: int) -> MemberIdentity:
    """Workload sender `index`, a registered clinician, as a client identity."""
    return MemberIdentity.from_seed(workload_key(SEED, index).seed)


def next_nonce(node: Node, key: bytes) -> int:
    pending = node.mempool.pending_nonces(key)
    return (pending[1] if pending else node.chain.committed_nonce(key)) + 1


def anchor(node: Node, author: MemberIdentity, label: int) -> bytes:
    """An anchor by `author` for a registered patient, at its next nonce."""
    nonce = next_nonce(node, author.member_key)
    fields = anchor_fields(SEED, label, 1000 + label)
    return Transaction.create(author.signer, CHAIN, TxKind.ANCHOR_RECORD, nonce, fields).encode()


def admin_of(node: Node) -> MemberIdentity:
    return load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))


def registration(node: Node, admin: MemberIdentity, member: MemberIdentity) -> bytes:
    """The admin registers `member` as a clinician of the node's organisation."""
    return transactions.register_identity(
        admin,
        CHAIN,
        next_nonce(node, admin.member_key),
        organization_id=node.config.node.organization_id,
        member=member,
        role=Role.CLINICIAN,
    ).encode()


def admit(node: Node, *txs: bytes) -> list[str]:
    return [admission.code for admission in node.mempool.admit_batch(list(txs))]


def apply(node: Node, block: Block) -> list[int]:
    verdict = node.chain.validate_block(block)
    assert verdict.valid, verdict.reason
    node.chain.apply_block(block, commit_for(node, block), verdict)
    results = node.chain.store.tx_results(block.height)
    assert results is not None
    return [result.code for result in results]


def test_an_honest_proposal_around_membership_changes_is_always_valid(node: Node) -> None:
    admin = admin_of(node)
    newcomer, rotated = identity("newcomer"), identity("rotated")
    leaving, rotating = clinician(1), clinician(2)
    assert admit(node, registration(node, admin, newcomer)) == ["ok"]
    revoke = transactions.revoke_member(
        admin, CHAIN, next_nonce(node, admin.member_key), member_key=leaving.member_key
    ).encode()
    rotate = transactions.rotate_key(
        rotating, CHAIN, next_nonce(node, rotating.member_key), new_identity=rotated
    ).encode()
    assert admit(node, revoke, rotate, anchor(node, leaving, 1)) == ["ok", "ok", "ok"]
    # The targets try to sign around the pending changes; admission keeps them out.
    attempts = [anchor(node, newcomer, 3), anchor(node, rotated, 4), anchor(node, rotating, 5)]
    assert admit(node, *attempts) == ["not_a_member", "not_a_member", "key_rotation_pending"]

    block = node.chain.build_block(node.chain.height + 1, node.validator_key.public_key)
    assert len(block.txs) == 4
    # The revoked clinician's anchor was admitted while the revocation was pending; it comes
    # after the revocation, so execution refuses it (at the cost of its own nonce).
    assert apply(node, block) == [0, 0, 0, ResultCode.MEMBER_REVOKED]

    codes = admit(
        node,
        anchor(node, newcomer, 6),
        anchor(node, rotated, 7),
        anchor(node, rotating, 8),
        anchor(node, leaving, 9),
    )
    assert codes == ["ok", "ok", "key_rotated", "member_revoked"]
    following = node.chain.build_block(node.chain.height + 1, node.validator_key.public_key)
    assert apply(node, following) == [0, 0]


def test_a_proposal_carrying_a_transaction_admission_would_refuse_is_invalid(node: Node) -> None:
    admin = admin_of(node)
    stranger = identity("stranger")
    member = anchor(node, clinician(0), 0)
    stranger_anchor = anchor(node, stranger, 1)
    verdict = node.chain.validate_block(proposal_with(node, [member, stranger_anchor]))
    assert not verdict.valid
    assert verdict.reason.startswith("transaction 1: not_a_member: sender")
    # A key the block itself registers is not a member of the state the block extends.
    register = registration(node, admin, stranger)
    verdict = node.chain.validate_block(proposal_with(node, [register, stranger_anchor]))
    assert verdict.reason.startswith("transaction 1: not_a_member")
    by_member = transactions.validator_update(
        admin.signer,
        CHAIN,
        next_nonce(node, admin.member_key),
        validator_key=b"\x09" * 32,
        power=1,
        epoch=1,
    ).encode()
    verdict = node.chain.validate_block(proposal_with(node, [by_member]))
    assert verdict.reason.startswith("transaction 0: not_a_validator")
    # The same block without the stranger's transaction is valid.
    assert node.chain.validate_block(proposal_with(node, [member])).valid


def test_rotated_and_revoked_senders_make_a_proposal_invalid_once_committed(node: Node) -> None:
    admin = admin_of(node)
    rotating, leaving = clinician(0), clinician(1)
    rotate = transactions.rotate_key(
        rotating, CHAIN, next_nonce(node, rotating.member_key), new_identity=identity("new")
    ).encode()
    revoke = transactions.revoke_member(
        admin, CHAIN, next_nonce(node, admin.member_key), member_key=leaving.member_key
    ).encode()
    assert admit(node, rotate, revoke) == ["ok", "ok"]
    commit_own_block(node)
    for sender, code in ((rotating, "key_rotated"), (leaving, "member_revoked")):
        verdict = node.chain.validate_block(proposal_with(node, [anchor(node, sender, 2)]))
        assert verdict.reason.startswith(f"transaction 0: {code}")


def test_the_proposer_leaves_out_a_pending_transaction_the_rule_now_refuses(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault injected on purpose: the recheck after the revocation's block is skipped, so the
    pool keeps a transaction of the revoked member. The proposer must not propose it."""
    admin = admin_of(node)
    leaving, staying = clinician(1), clinician(0)
    assert admit(node, anchor(node, leaving, 1)) == ["ok"]
    assert admit(node, anchor(node, leaving, 2)) == ["ok"]
    revoke = transactions.revoke_member(
        admin, CHAIN, next_nonce(node, admin.member_key), member_key=leaving.member_key
    ).encode()
    monkeypatch.setattr(node.sender_admission, "recheck_senders", lambda block, results: set())
    assert apply(node, proposal_with(node, [revoke])) == [0]
    assert len(node.mempool) == 2  # the skipped recheck left them
    assert admit(node, anchor(node, staying, 3)) == ["ok"]
    with caplog.at_level(logging.WARNING, logger="emrchain.node.chain"):
        block = node.chain.build_block(node.chain.height + 1, node.validator_key.public_key)
    assert len(block.txs) == 1 and leaving.member_key not in block.txs[0]
    assert "left 1 senders the sender rule refuses out of our proposal" in caplog.text
    assert len(node.mempool) == 1  # and the pool dropped them
    assert node.chain.validate_block(block).valid
