"""The snapshot manifest, its digest, the validators' vouches for it and their tally.

A manifest names one snapshot: the chain, the height h, the header of block h, the app hash
after h, the validator sets of heights h, h+1 and h+2, and the SHA-256 of every chunk. Its
digest is SHA-256 of its one canonical encoding. A validator vouches for a snapshot by signing
`signed_message(SNAPSHOT_VOUCH, chain id, height u64 | digest 32)` with its consensus key; a
joining node accepts a manifest once vouches of more than 2/3 of the voting power of the
validator set of height h (a set it trusts) are in hand (docs/spec/statesync.md §2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from emrchain.crypto.keys import Signer, verify_signature
from emrchain.types.block import BlockHeader
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.signing import Domain, signed_message
from emrchain.types.validator import ValidatorSet

MANIFEST_VERSION = 1
MAX_CHUNKS = 1 << 20
"""Most chunks in one snapshot (4 TiB of state at the largest chunk size)."""
MAX_HEADER_BYTES = 1_024
MAX_VALIDATOR_SET_BYTES = 2 + 1_024 * 64
VOUCH_BYTES = 32 + 64


@dataclass(frozen=True)
class Manifest:
    chain_id: bytes
    height: int
    header: BlockHeader
    """The header of block `height` (its block id is the head's block id after restoring)."""
    app_hash: bytes
    """The app hash after executing `height` (block height+1's header carries it)."""
    validators: ValidatorSet
    """The set of `height`: the vouchers, hashed in `header.validators_hash`."""
    next_validators: ValidatorSet
    """The set of height+1, hashed in `header.next_validators_hash`."""
    after_next_validators: ValidatorSet
    """The set of height+2, made by executing `height` (block height+1's header names it)."""
    entry_count: int
    chunk_hashes: tuple[bytes, ...]

    def check(self) -> None:
        """ValueError unless the parts agree with each other."""
        header = self.header
        if header.chain_id != self.chain_id or header.height != self.height:
            raise ValueError("the header is not the one of this chain and height")
        if header.validators_hash != self.validators.hash:
            raise ValueError("the validator set is not the one the header names")
        if header.next_validators_hash != self.next_validators.hash:
            raise ValueError("the next validator set is not the one the header names")
        if len(self.app_hash) != 32 or not all(len(item) == 32 for item in self.chunk_hashes):
            raise ValueError("hashes are 32 bytes")
        if not self.chunk_hashes or len(self.chunk_hashes) > MAX_CHUNKS:
            raise ValueError(f"a snapshot has 1..{MAX_CHUNKS} chunks")

    def encode(self) -> bytes:
        writer = (
            Writer()
            .u8(MANIFEST_VERSION)
            .var_bytes(self.chain_id, 1)
            .u64(self.height)
            .var_bytes(self.header.encode(), 2)
            .fixed(self.app_hash, 32)
        )
        for validator_set in (self.validators, self.next_validators, self.after_next_validators):
            writer.var_bytes(validator_set.encode(), 4)
        writer.u64(self.entry_count).u32(len(self.chunk_hashes))
        for chunk_hash in self.chunk_hashes:
            writer.fixed(chunk_hash, 32)
        return writer.bytes()

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Manifest:
        reader = Reader(data, "Manifest")
        version = reader.u8("version")
        if version != MANIFEST_VERSION:
            raise DecodeError(f"Manifest.version: unsupported version {version}")
        chain_id = reader.var_bytes(1, 50, "chain_id")
        height = reader.u64("height")
        header = BlockHeader.decode(reader.var_bytes(2, MAX_HEADER_BYTES, "header"))
        app_hash = reader.fixed(32, "app_hash")
        validators, next_validators, after_next = (
            ValidatorSet.decode(reader.var_bytes(4, MAX_VALIDATOR_SET_BYTES, name), limits)
            for name in ("validators", "next_validators", "after_next_validators")
        )
        entry_count = reader.u64("entry_count")
        count = reader.count(4, MAX_CHUNKS, "chunk_count")
        hashes = tuple(reader.fixed(32, "chunk_hash") for _ in range(count))
        reader.finish()
        manifest = cls(
            chain_id,
            height,
            header,
            app_hash,
            validators,
            next_validators,
            after_next,
            entry_count,
            hashes,
        )
        try:
            manifest.check()
        except ValueError as error:
            raise DecodeError(f"Manifest: {error}") from None
        return manifest

    @cached_property
    def digest(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @property
    def block_id(self) -> bytes:
        return self.header.block_id


def vouch_message(chain_id: bytes, height: int, digest: bytes) -> bytes:
    """The bytes a validator signs to vouch for the snapshot of `height` with `digest`."""
    return signed_message(
        Domain.SNAPSHOT_VOUCH, chain_id, Writer().u64(height).fixed(digest, 32).bytes()
    )


@dataclass(frozen=True, slots=True)
class Vouch:
    validator: bytes
    signature: bytes

    def encode(self) -> bytes:
        return Writer().fixed(self.validator, 32).fixed(self.signature, 64).bytes()

    @classmethod
    def read(cls, reader: Reader) -> Vouch:
        return cls(reader.fixed(32, "validator"), reader.fixed(64, "signature"))

    def verifies(self, chain_id: bytes, height: int, digest: bytes) -> bool:
        return verify_signature(
            self.validator, vouch_message(chain_id, height, digest), self.signature
        )


def sign_vouch(signer: Signer, manifest: Manifest) -> Vouch:
    message = vouch_message(manifest.chain_id, manifest.height, manifest.digest)
    return Vouch(signer.public_key, signer.sign(message))


@dataclass(slots=True)
class Tally:
    """Vouches seen for the snapshots of one height, checked against the set of that height.

    A validator's vouch counts for one digest only: one whose key vouched two different digests
    at this height (`equivocators`) counts for none."""

    chain_id: bytes
    height: int
    validators: ValidatorSet
    by_validator: dict[bytes, set[bytes]] = field(default_factory=dict)
    equivocators: set[bytes] = field(default_factory=set)

    def add(self, digest: bytes, vouch: Vouch) -> str | None:
        """Record `vouch` for `digest`; the reason it is refused, or None."""
        if vouch.validator not in self.validators:
            return "not a validator of that height"
        digests = self.by_validator.setdefault(vouch.validator, set())
        if digest in digests:
            return None
        if not vouch.verifies(self.chain_id, self.height, digest):
            return "forged signature"
        digests.add(digest)
        if len(digests) > 1:
            self.equivocators.add(vouch.validator)
            return "the validator vouched for two different snapshots of one height"
        return None

    def power(self, digest: bytes) -> int:
        return sum(
            self.validators.power_of(validator)
            for validator, digests in self.by_validator.items()
            if digest in digests and validator not in self.equivocators
        )

    def has_quorum(self, digest: bytes) -> bool:
        """More than 2/3 of the set's voting power vouched for `digest`."""
        return self.validators.has_quorum(self.power(digest))


def encode_vouches(vouches: Iterable[Vouch]) -> bytes:
    items = list(vouches)
    writer = Writer().u16(len(items))
    for vouch in items:
        writer.raw(vouch.encode())
    return writer.bytes()


def read_vouches(reader: Reader, limits: Limits) -> tuple[Vouch, ...]:
    count = reader.count(2, limits.max_validators, "vouch_count")
    return tuple(Vouch.read(reader) for _ in range(count))
