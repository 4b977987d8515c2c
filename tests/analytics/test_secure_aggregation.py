"""Secure aggregation (issue #22 part 4): masks cancel, dropouts, reveals, indistinguishability."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

from emrchain.analytics.secure_aggregation import (
    MODULUS,
    MaskContext,
    MissingRevealError,
    SecureAggregationError,
    TooFewSurvivorsError,
    WrongRevealError,
    agreed_commitments,
    decode_fixed,
    encode_fixed,
    expand_seed,
    mask_contribution,
    pair_commitments,
    pair_seed,
    reveal_pair_seeds,
    unmask_sum,
)
from emrchain.keystore.member import OrganizationKey

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c", "hospital-d")
SIGNIFICANCE = 0.001
"""A uniformity test at this level fails a truly uniform sample 1 time in 1000; the samples
are fixed (fixed keys, fixed rounds), so each outcome here is reproducible."""


def private_keys() -> dict[str, X25519PrivateKey]:
    return {
        name: X25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())
        for name in HOSPITALS
    }


def public_keys(keys: dict[str, X25519PrivateKey]) -> dict[str, bytes]:
    return {name: key.public_key().public_bytes_raw() for name, key in keys.items()}


def context(round_number: int = 0) -> MaskContext:
    return MaskContext("emr-test", "study-1", "query-1", round_number)


def masked_round(
    values: dict[str, list[int]], round_number: int = 0
) -> tuple[dict[str, list[int]], dict[str, X25519PrivateKey], dict[str, bytes]]:
    keys = private_keys()
    publics = public_keys(keys)
    masked = {
        name: mask_contribution(vector, name, HOSPITALS, keys[name], publics, context(round_number))
        for name, vector in values.items()
    }
    return masked, keys, publics


def sample_values() -> dict[str, list[int]]:
    return {
        name: encode_fixed([index * 1.5 - 2.0, -0.25 * index, 1000.0, 0.0])
        for index, name in enumerate(HOSPITALS)
    }


def all_commitments(
    keys: dict[str, X25519PrivateKey], publics: dict[str, bytes], round_number: int = 0
) -> dict[tuple[str, str], bytes]:
    return agreed_commitments(
        {
            name: pair_commitments(name, HOSPITALS, keys[name], publics, context(round_number))
            for name in HOSPITALS
        }
    )


def test_fixed_point_round_trips_negatives_and_refuses_out_of_range() -> None:
    assert decode_fixed(encode_fixed([-1.5, 0.0, 3.25, -(2.0**39)])) == [
        -1.5,
        0.0,
        3.25,
        -(2.0**39),
    ]
    with pytest.raises(SecureAggregationError):
        encode_fixed([2.0**41])
    with pytest.raises(SecureAggregationError):
        encode_fixed([float("nan")])


def test_organisation_keys_on_chain_are_the_keys_masks_use() -> None:
    """The organisation key (PyNaCl) and the X25519 key here are the same 32 raw bytes."""
    key = OrganizationKey.generate("hospital-a")
    private = X25519PrivateKey.from_private_bytes(key.private_key)
    assert private.public_key().public_bytes_raw() == key.public_key


def test_both_ends_of_a_pair_derive_the_same_seed_bound_to_the_round() -> None:
    keys = private_keys()
    publics = public_keys(keys)
    a, b = HOSPITALS[0], HOSPITALS[1]
    seed = pair_seed(a, b, keys[a], publics, context())
    assert seed == pair_seed(b, a, keys[b], publics, context())
    assert seed != pair_seed(a, b, keys[a], publics, context(1))
    assert seed != pair_seed(
        a, b, keys[a], publics, MaskContext("emr-test", "study-2", "query-1", 0)
    )


def test_masks_cancel_and_the_sum_is_exact() -> None:
    values = sample_values()
    masked, _, _ = masked_round(values)
    for name in HOSPITALS:
        assert masked[name] != values[name]
    total = unmask_sum(masked, HOSPITALS, {}, {}, context(), minimum_survivors=3)
    expected = [sum(column) % MODULUS for column in zip(*values.values(), strict=True)]
    assert total == expected
    assert decode_fixed(total) == [1.0, -1.5, 4000.0, 0.0]


def test_a_dropped_hospital_is_removed_by_the_survivors_reveals() -> None:
    values = sample_values()
    masked, keys, publics = masked_round(values)
    commitments = all_commitments(keys, publics)
    dropped = "hospital-c"
    del masked[dropped]
    survivors = [name for name in HOSPITALS if name != dropped]
    with pytest.raises(MissingRevealError):
        unmask_sum(masked, HOSPITALS, {}, commitments, context(), minimum_survivors=3)
    reveals = {
        name: reveal_pair_seeds(name, [dropped], HOSPITALS, keys[name], publics, context())
        for name in survivors
    }
    assert all(set(seeds) == {dropped} for seeds in reveals.values())  # nothing between survivors
    total = unmask_sum(masked, HOSPITALS, reveals, commitments, context(), minimum_survivors=3)
    expected = [
        sum(column) % MODULUS for column in zip(*(values[n] for n in survivors), strict=True)
    ]
    assert total == expected


def test_a_missing_or_wrong_reveal_is_detected() -> None:
    masked, keys, publics = masked_round(sample_values())
    commitments = all_commitments(keys, publics)
    del masked["hospital-d"]
    reveals = {
        name: reveal_pair_seeds(name, ["hospital-d"], HOSPITALS, keys[name], publics, context())
        for name in HOSPITALS[:3]
    }
    missing = {name: seeds for name, seeds in reveals.items() if name != "hospital-b"}
    with pytest.raises(MissingRevealError, match="hospital-b"):
        unmask_sum(masked, HOSPITALS, missing, commitments, context(), minimum_survivors=3)
    # A seed of another round, or with another peer, is not the committed one.
    wrong = dict(reveals)
    wrong["hospital-a"] = reveal_pair_seeds(
        "hospital-a", ["hospital-d"], HOSPITALS, keys["hospital-a"], publics, context(1)
    )
    with pytest.raises(WrongRevealError, match="hospital-a"):
        unmask_sum(masked, HOSPITALS, wrong, commitments, context(), minimum_survivors=3)
    wrong["hospital-a"] = {"hospital-d": reveals["hospital-b"]["hospital-d"]}
    with pytest.raises(WrongRevealError):
        unmask_sum(masked, HOSPITALS, wrong, commitments, context(), minimum_survivors=3)
    # A participant never reveals for an unknown or for itself.
    with pytest.raises(SecureAggregationError, match="not participants"):
        reveal_pair_seeds(
            "hospital-a", ["hospital-x"], HOSPITALS, keys["hospital-a"], publics, context()
        )
    with pytest.raises(SecureAggregationError, match="must not reveal"):
        reveal_pair_seeds(
            "hospital-a", ["hospital-a"], HOSPITALS, keys["hospital-a"], publics, context()
        )


def test_a_lying_commitment_and_too_few_survivors_abandon_the_round() -> None:
    masked, keys, publics = masked_round(sample_values())
    published = {
        name: pair_commitments(name, HOSPITALS, keys[name], publics, context())
        for name in HOSPITALS
    }
    published["hospital-a"] = {pair: bytes(32) for pair in published["hospital-a"]}
    with pytest.raises(SecureAggregationError, match="committed differently"):
        agreed_commitments(published)
    only_two = {name: masked[name] for name in HOSPITALS[:2]}
    with pytest.raises(TooFewSurvivorsError):
        unmask_sum(only_two, HOSPITALS, {}, {}, context(), minimum_survivors=3)
    with pytest.raises(TooFewSurvivorsError):
        unmask_sum({"hospital-a": masked["hospital-a"]}, HOSPITALS, {}, {}, context(), 1)


# -- indistinguishability ---------------------------------------------------------------------

ROUNDS = 400
VECTOR_LENGTH = 16


def views_of(hospital: str, vector: list[int]) -> list[int]:
    """What the aggregator receives from `hospital` over ROUNDS rounds, same values each round."""
    keys = private_keys()
    publics = public_keys(keys)
    views: list[int] = []
    for round_number in range(ROUNDS):
        views += mask_contribution(
            vector, hospital, HOSPITALS, keys[hospital], publics, context(round_number)
        )
    return views


def looks_uniform(samples: Sequence[int]) -> bool:
    """Chi-square on the top byte (256 bins) and Kolmogorov-Smirnov on samples / 2**64."""
    counts = [0] * 256
    for sample in samples:
        counts[sample >> 56] += 1
    chi_square = stats.chisquare(counts).pvalue
    kolmogorov = stats.kstest([sample / MODULUS for sample in samples], "uniform").pvalue
    return bool(chi_square > SIGNIFICANCE and kolmogorov > SIGNIFICANCE)


def contribution() -> list[int]:
    return encode_fixed([0.5 * index - 3.0 for index in range(VECTOR_LENGTH)])


def test_one_hospitals_masked_view_is_indistinguishable_from_uniform() -> None:
    assert looks_uniform(views_of("hospital-b", contribution()))


def test_the_checker_fails_unmasked_and_half_masked_contributions() -> None:
    """The uniformity check can fail: the plain encoding, and masks on the low 32 bits only."""
    plain = contribution() * ROUNDS
    assert not looks_uniform(plain)
    half_masked = []
    for round_number in range(ROUNDS):
        weak = expand_seed(hashlib.sha256(b"%d" % round_number).digest(), VECTOR_LENGTH)
        half_masked += [
            (value + (mask & 0xFFFFFFFF)) % MODULUS
            for value, mask in zip(contribution(), weak, strict=True)
        ]
    assert not looks_uniform(half_masked)


def test_two_different_contributions_give_views_the_test_cannot_tell_apart() -> None:
    zeros = views_of("hospital-b", [0] * VECTOR_LENGTH)
    large = views_of("hospital-b", encode_fixed([1000.0 * (index + 1) for index in range(16)]))
    assert zeros != large
    assert looks_uniform(zeros) and looks_uniform(large)
    two_sample = stats.ks_2samp(
        [value / MODULUS for value in zeros], [value / MODULUS for value in large]
    )
    assert two_sample.pvalue > SIGNIFICANCE
    # The same two-sample test does tell the unmasked contributions apart.
    assert stats.ks_2samp([0] * 64, [1000 * (i + 1) for i in range(64)]).pvalue < SIGNIFICANCE
