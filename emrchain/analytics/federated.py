"""A logistic regression trained across hospitals, with secure aggregation and DP noise
(issue #22 part 5; protocol, accountant and numbers: docs/spec/analytics.md, "Federated model").

Off-chain code (floats and randomness are fine here; nothing of it runs in consensus). Each
hospital keeps its rows; per round the aggregator learns only the sum of the hospitals' noisy,
clipped gradient sums (`secure_aggregation.py`). Steps:

1. standardisation: one secure-aggregation round of each hospital's (count, sum of x, sum of
   x^2) gives every hospital the pooled mean and standard deviation of each feature;
2. `rounds` rounds of federated gradient descent: every hospital computes the gradient of the
   logistic loss of each of its rows at the current model, clips each to L2 norm
   `clip_norm`, sums them, adds its share of Gaussian noise (variance sigma^2 C^2 / m, m the
   minimum number of survivors, so any m or more survivors add at least sigma^2 C^2), encodes to
   fixed point and masks (with its row count appended); the aggregator unmasks the sum over the
   survivors, divides by their row count and takes a gradient step (with L2 regularisation)
   that it sends back to every hospital;
3. the privacy accountant (OpenDP): one round is the Gaussian mechanism of L2 sensitivity C on
   the sum (one patient's row added or removed), `rounds` of them compose in zCDP to
   rho = rounds / (2 sigma^2), converted to (epsilon, delta) by OpenDP; `noise_multiplier`
   finds the smallest sigma meeting a target epsilon by bisection.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from emrchain.analytics.secure_aggregation import (
    MaskContext,
    agreed_commitments,
    decode_fixed,
    encode_fixed,
    mask_contribution,
    pair_commitments,
    reveal_pair_seeds,
    unmask_sum,
)

dp.enable_features("contrib")

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[np.float64]
NoiseSampler = Callable[[Vector, float], Vector]
"""(vector, standard deviation) -> the vector plus independent Gaussian noise per entry."""

DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class Participant:
    """One hospital: its organisation id, organisation key and its own rows (never sent)."""

    organization_id: str
    private_key: X25519PrivateKey = field(repr=False)
    features: Matrix = field(repr=False)
    labels: Vector = field(repr=False)


@dataclass(frozen=True)
class TrainingPlan:
    """What the study declares before training: the privacy target and the optimiser."""

    epsilon: float
    """math.inf: no noise (the non-private federated baseline)."""
    delta: float = DEFAULT_DELTA
    rounds: int = 40
    clip_norm: float = 1.0
    learning_rate: float = 4.0
    l2_penalty: float = 1e-3
    minimum_survivors: int = 3

    def __post_init__(self) -> None:
        if not self.epsilon > 0 or not 0 < self.delta < 1:
            raise ValueError(
                f"need epsilon > 0 and 0 < delta < 1, got {self.epsilon}, {self.delta}"
            )
        if self.rounds < 1 or not self.clip_norm > 0 or not self.learning_rate > 0:
            raise ValueError("rounds, clip_norm and learning_rate must be positive")
        if self.minimum_survivors < 2:
            raise ValueError("minimum_survivors below 2 would unmask one hospital's update")


@dataclass(frozen=True)
class FederatedModel:
    mean: Vector
    scale: Vector
    weights: Vector
    """One weight per standardised feature, then the intercept."""
    noise_multiplier: float

    def probabilities(self, features: Matrix) -> Vector:
        return _sigmoid(_with_intercept((features - self.mean) / self.scale) @ self.weights)

    def serialized(self) -> bytes:
        """Canonical bytes: 4 little-endian float64 arrays, each after its u32 length."""
        parts = [self.mean, self.scale, self.weights]
        return b"emrchain-federated-logistic-v1" + b"".join(
            len(part).to_bytes(4, "little") + part.astype("<f8").tobytes() for part in parts
        )

    def sha256(self) -> bytes:
        return hashlib.sha256(self.serialized()).digest()


def epsilon_of(rho: float, delta: float) -> float:
    """The epsilon OpenDP's conversion gives for rho-zCDP at `delta`."""
    gaussian = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.l2_distance(T=float),
        scale=1.0 / math.sqrt(2.0 * rho),  # rho = sensitivity^2 / (2 scale^2), sensitivity 1
    )
    return float(dp.c.make_zCDP_to_approxDP(gaussian).map(1.0).epsilon(delta))


@functools.lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, rounds: int) -> float:
    """The smallest sigma (noise standard deviation per unit of clip norm) for which `rounds`
    Gaussian rounds meet (epsilon, delta); 0 for epsilon = inf."""
    if math.isinf(epsilon):
        return 0.0
    low, high = 1e-8, 1e4  # rho bounds: epsilon_of is increasing in rho
    for _ in range(100):
        middle = math.sqrt(low * high)
        if epsilon_of(middle, delta) > epsilon:
            high = middle
        else:
            low = middle
    return math.sqrt(rounds / (2.0 * low))


def seeded_noise(generator: np.random.Generator) -> NoiseSampler:
    """Reproducible noise for benchmarks and tests (numpy's PCG64, not a CSPRNG)."""
    return lambda vector, deviation: vector + generator.normal(0.0, deviation, vector.shape)


def opendp_noise(vector: Vector, deviation: float) -> Vector:
    """Noise from OpenDP's Gaussian mechanism (its CSPRNG, not reproducible): for deployment."""
    if deviation == 0.0:
        return vector
    measurement = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.l2_distance(T=float),
        scale=deviation,
    )
    return np.asarray(measurement([float(value) for value in vector]), dtype=np.float64)


@dataclass
class Aggregator:
    """The party that unmasks sums: it sees masked vectors and the sums, nothing else."""

    participants: Sequence[str]
    public_keys: Mapping[str, bytes]
    chain_id: str
    study_id: str
    query_id: str
    minimum_survivors: int

    def secure_sum(
        self,
        hospitals: Sequence[Participant],
        vectors: Mapping[str, Vector],
        round_number: int,
        dropped: frozenset[str] = frozenset(),
    ) -> Vector:
        """Each hospital commits to its pair seeds and masks its vector; the ones in `dropped`
        never send theirs, the survivors reveal their seeds with them (docs/spec/analytics.md,
        "A participant that drops out"), and only the survivors' sum is unmasked."""
        context = MaskContext(self.chain_id, self.study_id, self.query_id, round_number)
        ids = self.participants
        commitments = agreed_commitments(
            {
                h.organization_id: pair_commitments(
                    h.organization_id, ids, h.private_key, self.public_keys, context
                )
                for h in hospitals
            }
        )
        survivors = [h for h in hospitals if h.organization_id not in dropped]
        masked = {
            h.organization_id: mask_contribution(
                encode_fixed([float(value) for value in vectors[h.organization_id]]),
                h.organization_id,
                ids,
                h.private_key,
                self.public_keys,
                context,
            )
            for h in survivors
        }
        gone = sorted(dropped)
        reveals = {
            h.organization_id: reveal_pair_seeds(
                h.organization_id, gone, ids, h.private_key, self.public_keys, context
            )
            for h in survivors
        }
        total = unmask_sum(masked, ids, reveals, commitments, context, self.minimum_survivors)
        return np.asarray(decode_fixed(total), dtype=np.float64)


def train(
    hospitals: Sequence[Participant],
    plan: TrainingPlan,
    noise: NoiseSampler,
    *,
    chain_id: str = "emrchain-federated",
    study_id: str = "study",
    query_id: str = "training",
    dropouts: Mapping[int, frozenset[str]] | None = None,
) -> FederatedModel:
    """Federated DP logistic regression over `hospitals` (see the module docstring);
    the masks are bound to (chain_id, study_id, query_id) and a round number: 0 for the
    standardisation, i + 1 for gradient round i. `dropouts[i]` are the hospitals that send
    nothing in gradient round i (0-based)."""
    public_keys = {
        hospital.organization_id: hospital.private_key.public_key().public_bytes_raw()
        for hospital in hospitals
    }
    aggregator = Aggregator(
        [hospital.organization_id for hospital in hospitals],
        public_keys,
        chain_id,
        study_id,
        query_id,
        plan.minimum_survivors,
    )
    mean, scale = _pooled_standardisation(hospitals, aggregator)
    sigma = noise_multiplier(plan.epsilon, plan.delta, plan.rounds)
    share_deviation = sigma * plan.clip_norm / math.sqrt(plan.minimum_survivors)
    width = hospitals[0].features.shape[1] + 1
    weights = np.zeros(width)
    for round_number in range(plan.rounds):
        updates = {
            hospital.organization_id: np.append(
                noise(
                    _clipped_gradient_sum(hospital, mean, scale, weights, plan.clip_norm),
                    share_deviation,
                ),
                float(len(hospital.labels)),  # the divisor: the survivors' row count
            )
            for hospital in hospitals
        }
        dropped = (dropouts or {}).get(round_number, frozenset())
        total = aggregator.secure_sum(hospitals, updates, round_number + 1, dropped)
        gradient = total[:-1] / total[-1]
        weights = weights - plan.learning_rate * (gradient + plan.l2_penalty * weights)
    return FederatedModel(mean, scale, weights, sigma)


def _pooled_standardisation(
    hospitals: Sequence[Participant], aggregator: Aggregator
) -> tuple[Vector, Vector]:
    vectors = {
        hospital.organization_id: np.concatenate(
            [
                [float(len(hospital.labels))],
                hospital.features.sum(axis=0),
                (hospital.features**2).sum(axis=0),
            ]
        )
        for hospital in hospitals
    }
    total = aggregator.secure_sum(hospitals, vectors, 0)
    width = hospitals[0].features.shape[1]
    count = total[0]
    mean = total[1 : 1 + width] / count
    variance = np.maximum(total[1 + width :] / count - mean**2, 1e-12)
    return mean, np.sqrt(variance)


def _clipped_gradient_sum(
    hospital: Participant, mean: Vector, scale: Vector, weights: Vector, clip_norm: float
) -> Vector:
    rows = _with_intercept((hospital.features - mean) / scale)
    residuals = _sigmoid(rows @ weights) - hospital.labels
    per_row = rows * residuals[:, None]
    norms = np.linalg.norm(per_row, axis=1)
    factors = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12))
    return np.asarray((per_row * factors[:, None]).sum(axis=0), dtype=np.float64)


def _with_intercept(rows: Matrix) -> Matrix:
    return np.hstack([rows, np.ones((rows.shape[0], 1))])


def _sigmoid(values: Vector) -> Vector:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(values, -30.0, 30.0))), dtype=np.float64)
