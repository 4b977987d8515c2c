"""Secure aggregation by pairwise masks (issue #22 part 4; rules: docs/spec/analytics.md).

Each participant (an organisation) adds to its integer vector, modulo 2**64, one mask per other
participant. The mask of the pair (a, b) with a < b (ids compared as strings) is expanded from
a seed both ends derive alone from their organisation keys: the X25519 secret of a's private
key with b's public key on chain (the `Organization.encryption_key` the custody wraps use),
through HKDF-SHA256 whose `info` binds the chain, study, query, round and the pair. `a` adds
the mask, `b` subtracts it, so the masks cancel in the sum and the aggregator learns only the
sum. One masked vector alone is its value plus a sum of ChaCha20 keystreams: uniform modulo
2**64 to anyone without a private key of the pair.

API (pure and deterministic given its inputs; no clock, no randomness):

- `encode_fixed(reals)` / `decode_fixed(integers)`: reals as fixed point, scale 2**16,
  negatives in two's complement modulo 2**64. `|x| <= MAX_ABS_ENCODED` (2**40) is enforced, so a
  sum of up to 2**6 = 64 participants' values stays below 2**46 < 2**63 and decodes exactly (to
  the 2**-16 rounding of each value).
- `mask_contribution(values, own, participants, private_key, public_keys, context)`: the masked
  vector `own` sends to the aggregator.
- `pair_commitments(own, participants, private_key, public_keys, context)`: SHA-256
  commitments to own's pair seeds, published before contributions; both ends of a pair publish
  the same value, so `agreed_commitments` checks they agree.
- `reveal_pair_seeds(own, dropped, private_key, public_keys, context)`: a survivor's seeds with
  the dropped participants only (never with a survivor).
- `unmask_sum(masked, participants, reveals, commitments, context, minimum_survivors)`: the sum
  of the survivors' values; checks each revealed seed against its commitment, refuses a missing
  reveal and a round with fewer than `minimum_survivors` survivors.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MODULUS = 2**64
FRACTION_BITS = 16
MAX_ABS_ENCODED = float(2**40)
"""Largest |value| `encode_fixed` takes: 64 participants sum below 2**46 (see module doc)."""
MINIMUM_SURVIVORS_FLOOR = 2
"""A round never unmasks the "sum" of one survivor: that would be its contribution in clear."""

_SEED_BYTES = 32
_INFO_LABEL = b"emrchain-secure-aggregation-v1"
_COMMITMENT_LABEL = b"emrchain-secure-aggregation-commitment-v1"
_ZERO_NONCE = bytes(16)
"""Each seed is used for exactly one keystream, so a fixed ChaCha20 nonce is safe."""

Pair = tuple[str, str]


class SecureAggregationError(ValueError):
    """The inputs of a round are inconsistent; nothing is unmasked."""


class MissingRevealError(SecureAggregationError):
    """A survivor did not reveal its seed with a dropped participant."""


class WrongRevealError(SecureAggregationError):
    """A revealed seed does not match the commitment published before the round."""


class TooFewSurvivorsError(SecureAggregationError):
    """Fewer survivors than the threshold: the round is abandoned."""


@dataclass(frozen=True)
class MaskContext:
    """What a round's masks are bound to: a seed of one round never masks another."""

    chain_id: str
    study_id: str
    query_id: str
    round_number: int

    def info(self, pair: Pair) -> bytes:
        """The HKDF info: one length-prefixed field each, so no two contexts collide."""
        fields = (self.chain_id, self.study_id, self.query_id, *pair)
        encoded = b"".join(_length_prefixed(field.encode("utf-8")) for field in fields)
        return _INFO_LABEL + encoded + struct.pack(">Q", self.round_number)


def encode_fixed(reals: Sequence[float]) -> list[int]:
    """`reals` as integers modulo 2**64: round(x * 2**16), negatives in two's complement."""
    encoded = []
    for real in reals:
        if not abs(real) <= MAX_ABS_ENCODED:  # also refuses NaN
            raise SecureAggregationError(f"value {real!r} outside +-{MAX_ABS_ENCODED:g}")
        encoded.append(round(real * 2**FRACTION_BITS) % MODULUS)
    return encoded


def decode_fixed(integers: Sequence[int]) -> list[float]:
    """The reals of a (summed) fixed-point vector: the upper half of the ring is negative."""
    return [
        ((value - MODULUS) if value >= MODULUS // 2 else value) / 2**FRACTION_BITS
        for value in integers
    ]


def sorted_pair(first: str, second: str) -> Pair:
    return (first, second) if first < second else (second, first)


def pair_seed(
    own: str,
    peer: str,
    private_key: X25519PrivateKey,
    public_keys: Mapping[str, bytes],
    context: MaskContext,
) -> bytes:
    """The 32-byte seed `own` and `peer` both derive (each from its private key)."""
    try:
        peer_key = X25519PublicKey.from_public_bytes(public_keys[peer])
    except KeyError:
        raise SecureAggregationError(f"no public organisation key for {peer!r}") from None
    shared = private_key.exchange(peer_key)
    hkdf = HKDF(hashes.SHA256(), _SEED_BYTES, salt=None, info=context.info(sorted_pair(own, peer)))
    return hkdf.derive(shared)


def expand_seed(seed: bytes, length: int) -> list[int]:
    """`length` integers modulo 2**64 from the ChaCha20 keystream of `seed`."""
    encryptor = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * length))
    return list(struct.unpack(f"<{length}Q", stream))


def seed_commitment(seed: bytes, pair: Pair, context: MaskContext) -> bytes:
    """SHA-256 over the round's info and the seed: binds a later reveal without showing it."""
    return hashlib.sha256(_COMMITMENT_LABEL + _length_prefixed(context.info(pair)) + seed).digest()


def mask_contribution(
    values: Sequence[int],
    own: str,
    participants: Sequence[str],
    private_key: X25519PrivateKey,
    public_keys: Mapping[str, bytes],
    context: MaskContext,
) -> list[int]:
    """`values` (integers modulo 2**64) plus own's pairwise masks with every other participant."""
    _check_participants(participants, own)
    masked = [value % MODULUS for value in values]
    for peer in participants:
        if peer == own:
            continue
        mask = expand_seed(pair_seed(own, peer, private_key, public_keys, context), len(masked))
        sign = 1 if own < peer else -1
        masked = [(value + sign * m) % MODULUS for value, m in zip(masked, mask, strict=True)]
    return masked


def pair_commitments(
    own: str,
    participants: Sequence[str],
    private_key: X25519PrivateKey,
    public_keys: Mapping[str, bytes],
    context: MaskContext,
) -> dict[Pair, bytes]:
    """Own's commitment to each of its pair seeds, published before any contribution."""
    _check_participants(participants, own)
    return {
        sorted_pair(own, peer): seed_commitment(
            pair_seed(own, peer, private_key, public_keys, context),
            sorted_pair(own, peer),
            context,
        )
        for peer in participants
        if peer != own
    }


def agreed_commitments(published: Mapping[str, Mapping[Pair, bytes]]) -> dict[Pair, bytes]:
    """One commitment per pair; both ends must have published the same (else one lies)."""
    agreed: dict[Pair, bytes] = {}
    for commitments in published.values():
        for pair, commitment in commitments.items():
            if agreed.setdefault(pair, commitment) != commitment:
                raise SecureAggregationError(f"the two ends of {pair} committed differently")
    return agreed


def reveal_pair_seeds(
    own: str,
    dropped: Sequence[str],
    participants: Sequence[str],
    private_key: X25519PrivateKey,
    public_keys: Mapping[str, bytes],
    context: MaskContext,
) -> dict[str, bytes]:
    """A survivor's seeds with the dropped participants, by dropped id."""
    _check_participants(participants, own)
    if unknown := set(dropped) - set(participants):
        raise SecureAggregationError(f"{sorted(unknown)} are not participants")
    if own in dropped:
        raise SecureAggregationError(f"{own!r} is declared dropped and must not reveal")
    return {peer: pair_seed(own, peer, private_key, public_keys, context) for peer in dropped}


def unmask_sum(
    masked: Mapping[str, Sequence[int]],
    participants: Sequence[str],
    reveals: Mapping[str, Mapping[str, bytes]],
    commitments: Mapping[Pair, bytes],
    context: MaskContext,
    minimum_survivors: int,
) -> list[int]:
    """The sum modulo 2**64 of the survivors' values (survivors: the keys of `masked`).

    For every survivor s and dropped d, `reveals[s][d]` must be the seed of (s, d) matching
    `commitments[(s, d) sorted]`; its mask is then taken back out of s's vector."""
    _check_participants(participants, None)
    survivors = [name for name in participants if name in masked]
    if unknown := set(masked) - set(participants):
        raise SecureAggregationError(f"contributions from non-participants {sorted(unknown)}")
    if len(survivors) < max(minimum_survivors, MINIMUM_SURVIVORS_FLOOR):
        raise TooFewSurvivorsError(
            f"{len(survivors)} survivors, at least {max(minimum_survivors, 2)} needed"
        )
    lengths = {len(vector) for vector in masked.values()}
    if len(lengths) != 1:
        raise SecureAggregationError(f"contributions of different lengths {sorted(lengths)}")
    length = lengths.pop()
    total = [0] * length
    for vector in masked.values():
        total = [(t + v) % MODULUS for t, v in zip(total, vector, strict=True)]
    dropped = [name for name in participants if name not in masked]
    for survivor in survivors:
        for gone in dropped:
            seed = _checked_reveal(survivor, gone, reveals, commitments, context)
            # The survivor added the mask if it sorts lower, so the aggregator subtracts it.
            sign = -1 if survivor < gone else 1
            mask = expand_seed(seed, length)
            total = [(t + sign * m) % MODULUS for t, m in zip(total, mask, strict=True)]
    return total


def _checked_reveal(
    survivor: str,
    gone: str,
    reveals: Mapping[str, Mapping[str, bytes]],
    commitments: Mapping[Pair, bytes],
    context: MaskContext,
) -> bytes:
    seed = reveals.get(survivor, {}).get(gone)
    if seed is None:
        raise MissingRevealError(f"{survivor!r} did not reveal its seed with dropped {gone!r}")
    pair = sorted_pair(survivor, gone)
    committed = commitments.get(pair)
    if committed is None or seed_commitment(seed, pair, context) != committed:
        raise WrongRevealError(f"{survivor!r}'s seed with {gone!r} does not match its commitment")
    return seed


def _check_participants(participants: Sequence[str], own: str | None) -> None:
    if len(set(participants)) != len(participants):
        raise SecureAggregationError("participants must be distinct")
    if own is not None and own not in participants:
        raise SecureAggregationError(f"{own!r} is not a participant")


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data
