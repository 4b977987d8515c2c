"""Validators and the validator set: who votes, with how much power.

Encoding: a validator is `public_key 32 | power u64`; a set is `count u16 | validators`, sorted by
public key with no duplicates, so every set has one encoding. The set hash is the RFC 6962
merkle root of the validator encodings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from emrchain import _core
from emrchain.schema import MAX_VALIDATOR_POWER
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import DEFAULT_LIMITS, MAX_TOTAL_VOTING_POWER, Limits


@dataclass(frozen=True, slots=True)
class Validator:
    public_key: bytes
    power: int

    def validate_basic(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ValueError("validator public key must be 32 bytes")
        if self.public_key == bytes(32):
            raise ValueError("validator public key must not be all zeros")
        if not 1 <= self.power <= MAX_VALIDATOR_POWER:
            raise ValueError(f"validator power must be within 1..{MAX_VALIDATOR_POWER}")

    def encode(self) -> bytes:
        return Writer().fixed(self.public_key, 32).u64(self.power).bytes()

    @classmethod
    def read(cls, reader: Reader) -> Validator:
        return cls(reader.fixed(32, "public_key"), reader.u64("power"))


class ValidatorSet:
    """An immutable, canonically ordered set of validators."""

    def __init__(self, validators: Iterable[Validator]) -> None:
        self.validators: tuple[Validator, ...] = tuple(
            sorted(validators, key=lambda validator: validator.public_key)
        )
        self._by_key = {validator.public_key: validator for validator in self.validators}

    def validate_basic(self, limits: Limits = DEFAULT_LIMITS) -> None:
        if not 1 <= len(self.validators) <= limits.max_validators:
            raise ValueError(f"a validator set has 1..{limits.max_validators} validators")
        if len(self._by_key) != len(self.validators):
            raise ValueError("duplicate validator public key")
        for validator in self.validators:
            validator.validate_basic()
        if self.total_power > MAX_TOTAL_VOTING_POWER:
            raise ValueError(f"total voting power exceeds {MAX_TOTAL_VOTING_POWER}")

    def __len__(self) -> int:
        return len(self.validators)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self.validators)

    def __contains__(self, public_key: object) -> bool:
        return public_key in self._by_key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and self.validators == other.validators

    def __hash__(self) -> int:
        return hash(self.validators)

    def __repr__(self) -> str:
        return f"ValidatorSet({len(self.validators)} validators, power {self.total_power})"

    def power_of(self, public_key: bytes) -> int:
        validator = self._by_key.get(public_key)
        return validator.power if validator else 0

    @cached_property
    def total_power(self) -> int:
        return sum(validator.power for validator in self.validators)

    def has_quorum(self, power: int) -> bool:
        """More than 2/3 of the total voting power (integer arithmetic, no rounding)."""
        return 3 * power > 2 * self.total_power

    def exceeds_one_third(self, power: int) -> bool:
        """More than 1/3 of the total: at least one correct validator is among them."""
        return 3 * power > self.total_power

    def encode(self) -> bytes:
        writer = Writer().u16(len(self.validators))
        for validator in self.validators:
            writer.raw(validator.encode())
        return writer.bytes()

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ValidatorSet:
        reader = Reader(data, "ValidatorSet")
        count = reader.count(2, limits.max_validators, "count")
        validators = [Validator.read(reader) for _ in range(count)]
        reader.finish()
        keys = [validator.public_key for validator in validators]
        if keys != sorted(keys):
            raise DecodeError("ValidatorSet: validators are not sorted by public key")
        validator_set = cls(validators)
        try:
            validator_set.validate_basic(limits)
        except ValueError as error:
            raise DecodeError(f"ValidatorSet: {error}") from None
        return validator_set

    @cached_property
    def hash(self) -> bytes:
        root: bytes = _core.merkle_root([validator.encode() for validator in self.validators])
        return root
