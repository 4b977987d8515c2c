"""The federated model (issue #22 part 5) on scikit-learn's breast-cancer data, offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from emrchain.analytics.experiment import (
    breast_cancer_split,
    centralised_score,
    diabetes_split,
    federated_score,
    hospitals_of,
    mean_federated_score,
)
from emrchain.analytics.federated import (
    DEFAULT_DELTA,
    TrainingPlan,
    epsilon_of,
    noise_multiplier,
    opendp_noise,
    seeded_noise,
    train,
)
from emrchain.analytics.secure_aggregation import TooFewSurvivorsError
from emrchain.bench import federated as bench_federated

SEEDS = range(5)
ACCEPTED_GAP_POINTS = 3.0


@pytest.mark.parametrize("skewed", [False, True], ids=["iid", "skewed"])
def test_epsilon_8_is_within_3_points_of_centralised_accuracy(skewed: bool) -> None:
    split = breast_cancer_split(skewed)
    central = centralised_score(split)
    federated = mean_federated_score(split, 8.0, SEEDS)
    assert central.accuracy > 0.93  # the baseline itself is sound
    assert 100 * (central.accuracy - federated.accuracy) <= ACCEPTED_GAP_POINTS
    # A privacy budget far too small does cost accuracy: the comparison can fail.
    assert mean_federated_score(split, 0.05, SEEDS).accuracy < central.accuracy - 0.03


def test_on_the_diabetes_data_epsilon_8_is_within_3_points_too() -> None:
    split = diabetes_split(skewed=False)
    central = centralised_score(split)
    federated = mean_federated_score(split, 8.0, SEEDS)
    assert central.accuracy > 0.7
    assert 100 * (central.accuracy - federated.accuracy) <= ACCEPTED_GAP_POINTS
    # A privacy budget far too small does cost accuracy: the comparison can fail.
    assert mean_federated_score(split, 0.05, SEEDS).accuracy < central.accuracy - 0.03


def test_the_accountant_meets_each_target_and_no_more_noise_than_needed() -> None:
    rounds = TrainingPlan(8.0).rounds
    for epsilon in (0.5, 1.0, 8.0, 16.0):
        sigma = noise_multiplier(epsilon, DEFAULT_DELTA, rounds)
        rho = rounds / (2 * sigma**2)  # zCDP of `rounds` Gaussian rounds, sensitivity 1
        assert epsilon_of(rho, DEFAULT_DELTA) <= epsilon + 1e-9
        assert epsilon_of(rho * 1.01, DEFAULT_DELTA) > epsilon
    assert noise_multiplier(math.inf, DEFAULT_DELTA, rounds) == 0.0


def test_a_label_skewed_split_trains_the_same_model_as_an_iid_one() -> None:
    """One full-batch step per round: the securely summed gradient does not depend on how the
    rows are split (docs/spec/analytics.md, "Federated model")."""
    iid, skewed = breast_cancer_split(False), breast_cancer_split(True)
    malignant_shares = [float(np.mean(labels == 0.0)) for _, labels in skewed.parts]
    assert max(malignant_shares) - min(malignant_shares) > 0.5
    _, iid_model = federated_score(iid, 8.0, seed=1)
    _, skewed_model = federated_score(skewed, 8.0, seed=1)
    assert np.allclose(
        iid_model.weights, skewed_model.weights, atol=5e-3
    )  # fixed-point rounding (2**-16) of the sums


def test_a_hospital_dropping_out_of_rounds_is_handled_and_too_many_abandon() -> None:
    split = breast_cancer_split(False)
    hospitals = hospitals_of(split)
    dropouts = {2: frozenset({"hospital-c"}), 7: frozenset({"hospital-a"})}
    model = train(
        hospitals, TrainingPlan(8.0), seeded_noise(np.random.default_rng(3)), dropouts=dropouts
    )
    accuracy = float(
        np.mean((model.probabilities(split.test_features) >= 0.5) == (split.test_labels == 1.0))
    )
    assert accuracy > centralised_score(split).accuracy - 0.03
    with pytest.raises(TooFewSurvivorsError):
        train(
            hospitals,
            TrainingPlan(8.0),
            seeded_noise(np.random.default_rng(3)),
            dropouts={0: frozenset({"hospital-a", "hospital-b"})},
        )


def test_the_model_hash_is_reproducible_and_opendp_noise_trains_too() -> None:
    split = breast_cancer_split(False)
    first = federated_score(split, 8.0, seed=4)[1]
    assert first.sha256() == federated_score(split, 8.0, seed=4)[1].sha256()
    assert first.sha256() != federated_score(split, 8.0, seed=5)[1].sha256()
    hospitals = hospitals_of(split)
    model = train(hospitals, TrainingPlan(8.0, rounds=10), opendp_noise)
    accuracy = float(
        np.mean((model.probabilities(split.test_features) >= 0.5) == (split.test_labels == 1.0))
    )
    assert accuracy > 0.85


def test_the_benchmark_prints_the_table_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "federated-epsilon.png"
    assert bench_federated.main(["--seeds", "1", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert [row["epsilon"] for row in summary["breast-cancer"]["iid"]["federated"]] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        "inf",
    ]
    assert sum(line.startswith("| diabetes | skewed |") for line in lines) == 7
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "arguments",
    [
        {"epsilon": 0.0},
        {"epsilon": 8.0, "delta": 0.0},
        {"epsilon": 8.0, "rounds": 0},
        {"epsilon": 8.0, "minimum_survivors": 1},
    ],
)
def test_a_bad_plan_is_refused_up_front(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TrainingPlan(**arguments)  # type: ignore[arg-type]
