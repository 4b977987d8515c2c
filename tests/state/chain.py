"""Build real, valid chains for tests: signed transactions, blocks whose headers follow the
application state, and commit certificates signed by the validators of each height.

`ChainBuilder` runs the node's application (`EmrApplication`) on a `MemoryState`, exactly as a
proposer and the network would; the store tests commit what it builds and compare against it.
Its default genesis has one organisation whose admins are the test clients (`CLIENTS`), so a
client's registration of a clinician (`register_tx`) applies from height 1 on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emrchain import _core
from emrchain.crypto.keys import Ed25519Signer
from emrchain.devnet.workload import registration_transactions
from emrchain.schema import Role, TxKind
from emrchain.state import (
    ApplicationRules,
    ExecutionResult,
    Handler,
    MemoryState,
    ResultCode,
    keys,
    read_validator_sets,
)
from emrchain.state.codes import FIRST_STATEFUL_CODE
from emrchain.state.emr import EMR_HANDLERS, EmrApplication
from emrchain.state.emr.genesis import GenesisAdmin, GenesisOrganization
from emrchain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    Transaction,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
)
from emrchain.types.block import ZERO_HASH, evidence_root, tx_ids
from emrchain.types.evidence import Evidence

CHAIN_ID = b"emrchain-test"
GENESIS_TIME_MS = 1_700_000_000_000
BLOCK_INTERVAL_MS = 1_000

# Refusals that come before the nonce is consumed: the transaction changes nothing at all.
NONCE_NOT_CONSUMED = frozenset({ResultCode.NONCE_USED, ResultCode.NONCE_GAP})


def consumes_nonce(code: int) -> bool:
    """Whether a transaction with result `code` used up its nonce: applied, or refused by a
    rule after its nonce checked out. Only refusals for the nonce itself, the signature or a
    stateless verdict (codes 1..15) leave the nonce to be used again."""
    return code not in NONCE_NOT_CONSUMED and not 0 < code < FIRST_STATEFUL_CODE


def refused_writes(sender_key: bytes) -> set[bytes]:
    """The exact keys a block holding one rule-refused transaction writes: the block's
    progress, and the sender's nonce, which the refused transaction consumes."""
    return {keys.PROGRESS, keys.nonce_key(sender_key)}


def signer(label: str | int) -> Ed25519Signer:
    """A deterministic key; validators use ints, clients use strings."""
    return Ed25519Signer(hashlib.sha256(b"emrchain-state-test/%s" % str(label).encode()).digest())


def signed_tx(
    key: Ed25519Signer, kind: TxKind, nonce: int, fields: dict[str, Any], chain_id: bytes = CHAIN_ID
) -> bytes:
    return Transaction.create(key, chain_id, kind, nonce, fields).encode()


def _encryption_key(public_key: bytes) -> bytes:
    """A stand-in X25519 public key (the chain only stores it)."""
    return hashlib.sha256(b"emrchain-state-test/x25519/" + public_key).digest()


TEST_ORGANIZATION_ID = "hospital-test"
ALICE, BOB = signer("alice"), signer("bob")
CLIENTS = (ALICE, BOB, *(signer(f"client/{index}") for index in range(6)))
"""The admins of the default genesis organisation: they may register members at once."""


def clients_organization(admins: Sequence[Ed25519Signer] = CLIENTS) -> GenesisOrganization:
    return GenesisOrganization(
        TEST_ORGANIZATION_ID,
        "Test Hospital",
        _encryption_key(b"organisation"),
        tuple(GenesisAdmin(key.public_key, _encryption_key(key.public_key)) for key in admins),
    )


def registration_fields(label: int) -> dict[str, Any]:
    """REGISTER_MEMBER of a clinician of the test organisation; `label` selects its key."""
    member = signer(f"member/{label}").public_key
    return {
        "organization_id": TEST_ORGANIZATION_ID,
        "member_key": member,
        "encryption_key": _encryption_key(member),
        "role": Role.CLINICIAN,
        "patient_id": bytes(32),
    }


def register_tx(admin: Ed25519Signer, nonce: int, label: int = 0) -> bytes:
    """A genesis admin registers a clinician; `label` selects the clinician's key (same label =
    same member: the second registration is refused, KEY_IN_USE)."""
    return signed_tx(admin, TxKind.REGISTER_MEMBER, nonce, registration_fields(label))


def validator_update_tx(
    approver: Ed25519Signer,
    nonce: int,
    validator_key: bytes,
    power: int,
    epoch: int,
    node_key: bytes | None = None,
    address: str = "",
) -> bytes:
    """An approval; an addition's node key defaults to a key derived from the validator key
    (any prime-order key will do where the test is not about nodes)."""
    if node_key is None:
        node_key = derived_node_key(validator_key) if power else bytes(32)
    fields = {
        "validator_key": validator_key,
        "power": power,
        "epoch": epoch,
        "node_key": node_key,
        "address": address,
    }
    return signed_tx(approver, TxKind.VALIDATOR_UPDATE, nonce, fields)


@dataclass(frozen=True)
class BuiltBlock:
    block: Block
    commit: CommitCertificate
    result: ExecutionResult


class ChainBuilder:
    """Produce consecutive blocks on the application's in-memory state."""

    def __init__(
        self,
        powers: Sequence[int] = (1, 1, 1, 1),
        *,
        chain_id: bytes = CHAIN_ID,
        rules: ApplicationRules | None = None,
        handlers: Mapping[TxKind, Handler] = EMR_HANDLERS,
        organizations: Sequence[GenesisOrganization] | None = None,
        anchor_path: bool = True,
        custody_set_size: int | None = None,
    ) -> None:
        """`organizations` None is the test organisation of `CLIENTS`; `anchor_path` runs
        `EmrApplication` with or without its compiled ANCHOR_RECORD accept path;
        `custody_set_size` is the genesis k (None: not set, the default)."""
        self.chain_id = chain_id
        self.keys = {signer(index).public_key: signer(index) for index in range(16)}
        self.validator_keys = [signer(index) for index in range(len(powers))]
        self.genesis_validators = ValidatorSet(
            Validator(key.public_key, power)
            for key, power in zip(self.validator_keys, powers, strict=True)
        )
        self.state = MemoryState()
        self.app = EmrApplication(
            chain_id, self.state, rules=rules, handlers=handlers, anchor_path=anchor_path
        )
        self.genesis = self.app.init_chain(
            self.genesis_validators,
            GENESIS_TIME_MS,
            organizations=[clients_organization()] if organizations is None else organizations,
            custody_set_size=custody_set_size,
        )
        self.state.apply_genesis(self.genesis)
        self.built: list[BuiltBlock] = []

    @property
    def height(self) -> int:
        return self.state.last_height()

    @staticmethod
    def block_time_ms(height: int) -> int:
        """The header time of block `height` (blocks are BLOCK_INTERVAL_MS apart)."""
        return GENESIS_TIME_MS + height * BLOCK_INTERVAL_MS

    def propose(self, txs: Iterable[bytes], evidence: tuple[Evidence, ...] = ()) -> Block:
        """The next block for `txs` (and `evidence`), with a header that follows the state."""
        txs = tuple(txs)
        height = self.height + 1
        validators, next_validators = read_validator_sets(self.state)
        last = self.built[-1] if self.built else None
        header = BlockHeader(
            chain_id=self.chain_id,
            height=height,
            time_ms=self.block_time_ms(height),
            previous_block_id=last.block.block_id if last else ZERO_HASH,
            last_commit_hash=last.commit.hash if last else ZERO_HASH,
            tx_root=_core.merkle_root(tx_ids(txs)),
            tx_count=len(txs),
            app_hash=self.state.last_app_hash(),
            validators_hash=validators.hash,
            next_validators_hash=next_validators.hash,
            evidence_hash=evidence_root(evidence),
            proposer=validators.validators[0].public_key,
        )
        block = Block(header, txs, last.commit if last else None, evidence)
        block.validate_basic()
        return block

    def certify(self, block: Block) -> CommitCertificate:
        """Precommits of every validator of the block's height."""
        validators, _ = read_validator_sets(self.state)
        votes = [
            Vote.create(
                self.keys[validator.public_key],
                self.chain_id,
                VoteType.PRECOMMIT,
                block.height,
                0,
                block.block_id,
            )
            for validator in validators
        ]
        return CommitCertificate.from_precommits(votes)

    def add_block(
        self, txs: Iterable[bytes] = (), evidence: tuple[Evidence, ...] = ()
    ) -> BuiltBlock:
        """Propose, execute and apply the next block; return it with its certificate."""
        block = self.propose(txs, evidence)
        commit = self.certify(block)
        result = self.app.execute_block(block, self.state)
        self.state.apply(block, result)
        built = BuiltBlock(block, commit, result)
        self.built.append(built)
        return built

    def register_workload(self, *, senders: int, seed: int = 0) -> BuiltBlock:
        """A block in which ALICE (nonces 1 on) registers the synthetic workload's clinicians
        and patients (`emrchain.devnet.workload`), so that its anchors apply afterwards."""
        txs = registration_transactions(
            ALICE, TEST_ORGANIZATION_ID, chain_id=self.chain_id, senders=senders, seed=seed
        )
        built = self.add_block(txs)
        assert [result.code for result in built.result.tx_results] == [0] * len(txs)
        return built


def derived_node_key(validator_key: bytes) -> bytes:
    """A deterministic prime-order node key for a validator key (tests only)."""
    return Ed25519Signer(hashlib.sha256(b"node" + validator_key).digest()).public_key
