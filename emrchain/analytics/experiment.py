"""The federated model's experiment (issue #22 part 5): scikit-learn's breast-cancer and
diabetes data split across 4 hospitals (IID and label-skewed), federated DP training against
centralised non-private training on the same train/test split. `scripts/bench-federated`
prints and plots it; `tests/analytics/test_federated.py` checks the epsilon = 8 gap.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from emrchain.analytics.federated import (
    FederatedModel,
    Matrix,
    Participant,
    TrainingPlan,
    Vector,
    seeded_noise,
    train,
)

HOSPITAL_IDS = ("hospital-a", "hospital-b", "hospital-c", "hospital-d")
SPLIT_SEED = 20261204
TEST_FRACTION = 0.3
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
SKEWED_LABEL_0_SHARES = (0.7, 0.4, 0.2, 0.05)
"""Label skew: the share of hospital i's rows of label 0 (breast cancer: malignant; diabetes:
progression at most DIABETES_HIGH_PROGRESSION), as far as the rows allow."""
DIABETES_HIGH_PROGRESSION = 140.0
"""The diabetes target (a disease progression score one year on, 25..346) made binary: label 1
above this, declared up front (near the score's median), not fitted to the data."""


@dataclass(frozen=True)
class Split:
    train_features: Matrix
    train_labels: Vector
    test_features: Matrix
    test_labels: Vector
    parts: tuple[tuple[Matrix, Vector], ...]
    """One (features, labels) per hospital; together exactly the training rows."""


@dataclass(frozen=True)
class Score:
    accuracy: float
    auc: float


def organization_key(organization_id: str) -> X25519PrivateKey:
    """A fixed key per hospital, so runs are reproducible (a devnet uses the real ones)."""
    seed = hashlib.sha256(b"emrchain-federated-experiment/" + organization_id.encode()).digest()
    return X25519PrivateKey.from_private_bytes(seed)


def breast_cancer_split(skewed: bool) -> Split:
    """569 patients, 30 aspirate image features; label 1 benign, 0 malignant."""
    data = load_breast_cancer()
    return _split(np.asarray(data.data, dtype=np.float64), np.asarray(data.target), skewed)


def diabetes_split(skewed: bool) -> Split:
    """442 patients, 10 baseline features (age, sex, BMI, blood pressure, 6 serum measures;
    scikit-learn ships them centred and scaled); label 1 for high progression."""
    data = load_diabetes()
    labels = np.asarray(data.target) > DIABETES_HIGH_PROGRESSION
    return _split(np.asarray(data.data, dtype=np.float64), labels, skewed)


DATASETS = {"breast-cancer": breast_cancer_split, "diabetes": diabetes_split}


def _split(features: Matrix, target: npt.NDArray[np.generic], skewed: bool) -> Split:
    labels = np.asarray(target, dtype=np.float64)
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    parts = _skewed_parts(train_x, train_y) if skewed else _iid_parts(train_x, train_y)
    return Split(train_x, train_y, test_x, test_y, parts)


def hospitals_of(split: Split) -> list[Participant]:
    return [
        Participant(name, organization_key(name), features, labels)
        for name, (features, labels) in zip(HOSPITAL_IDS, split.parts, strict=True)
    ]


def score(probabilities: Vector, labels: Vector) -> Score:
    accuracy = float(np.mean((probabilities >= 0.5) == (labels == 1.0)))
    return Score(accuracy, float(roc_auc_score(labels, probabilities)))


def centralised_score(split: Split) -> Score:
    """Non-private logistic regression on the pooled training rows (scikit-learn defaults)."""
    scaler = StandardScaler().fit(split.train_features)
    model = LogisticRegression(max_iter=5000).fit(
        scaler.transform(split.train_features), split.train_labels
    )
    probabilities = model.predict_proba(scaler.transform(split.test_features))[:, 1]
    return score(np.asarray(probabilities, dtype=np.float64), split.test_labels)


def federated_score(split: Split, epsilon: float, seed: int) -> tuple[Score, FederatedModel]:
    model = train(
        hospitals_of(split), TrainingPlan(epsilon), seeded_noise(np.random.default_rng(seed))
    )
    return score(model.probabilities(split.test_features), split.test_labels), model


def mean_federated_score(split: Split, epsilon: float, seeds: Sequence[int]) -> Score:
    scores = [federated_score(split, epsilon, seed)[0] for seed in seeds]
    return Score(
        float(np.mean([item.accuracy for item in scores])),
        float(np.mean([item.auc for item in scores])),
    )


def _iid_parts(features: Matrix, labels: Vector) -> tuple[tuple[Matrix, Vector], ...]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    return tuple(
        (features[chunk], labels[chunk]) for chunk in np.array_split(order, len(HOSPITAL_IDS))
    )


def _skewed_parts(features: Matrix, labels: Vector) -> tuple[tuple[Matrix, Vector], ...]:
    """Equal-sized hospitals whose share of label 0 follows SKEWED_LABEL_0_SHARES as far as
    the rows allow; the last hospital takes whatever is left."""
    generator = np.random.default_rng(SPLIT_SEED)
    zeros = list(generator.permutation(np.flatnonzero(labels == 0.0)))
    ones = list(generator.permutation(np.flatnonzero(labels == 1.0)))
    size = len(labels) // len(HOSPITAL_IDS)
    parts = []
    for index, share in enumerate(SKEWED_LABEL_0_SHARES):
        if index == len(HOSPITAL_IDS) - 1:
            chosen = zeros + ones
        else:
            wanted = min(round(share * size), len(zeros))
            chosen = zeros[:wanted] + ones[: size - wanted]
            zeros, ones = zeros[wanted:], ones[size - wanted :]
        rows = np.asarray(chosen, dtype=np.int64)
        parts.append((features[rows], labels[rows]))
    return tuple(parts)
