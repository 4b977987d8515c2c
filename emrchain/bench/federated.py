"""The federated model against epsilon (issue #22 part 5): `scripts/bench-federated`.

For the IID and the label-skewed split of scikit-learn's breast-cancer and diabetes data (each
across 4 hospitals),
trains the federated DP logistic regression at each epsilon of `EPSILONS` (delta 1e-5; the mean
over `--seeds` noise seeds) and the centralised non-private logistic regression on the same
train/test split. Prints a Markdown table, writes the plot (default
docs/benchmarks/federated-epsilon.png), and prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emrchain.analytics.experiment import (
    DATASETS,
    EPSILONS,
    Score,
    Split,
    centralised_score,
    mean_federated_score,
)
from emrchain.analytics.federated import DEFAULT_DELTA, TrainingPlan, noise_multiplier

DEFAULT_PLOT = Path("docs/benchmarks/federated-epsilon.png")
SPLITS = {"iid": False, "skewed": True}


def run(seeds: int) -> dict[str, Any]:
    rounds = TrainingPlan(math.inf).rounds
    results: dict[str, Any] = {"delta": DEFAULT_DELTA, "rounds": rounds, "seeds": seeds}
    for dataset, make_split in DATASETS.items():
        results[dataset] = _dataset_results(make_split, seeds, rounds)
    return results


def _dataset_results(
    make_split: Callable[[bool], Split], seeds: int, rounds: int
) -> dict[str, object]:
    results: dict[str, object] = {}
    for name, skewed in SPLITS.items():
        split = make_split(skewed)
        central = centralised_score(split)
        rows = []
        for epsilon in EPSILONS:
            federated = mean_federated_score(split, epsilon, range(seeds))
            rows.append(
                {
                    "epsilon": "inf" if math.isinf(epsilon) else epsilon,
                    "sigma": round(noise_multiplier(epsilon, DEFAULT_DELTA, rounds), 3),
                    "accuracy": round(federated.accuracy, 4),
                    "auc": round(federated.auc, 4),
                    "gap_points": round(100 * (central.accuracy - federated.accuracy), 2),
                }
            )
        results[name] = {"centralised": _rounded(central), "federated": rows}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| data | split | ε | σ (× C) | accuracy | AUC | centralised accuracy | AUC | gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for name in SPLITS:
            part = results[dataset][name]
            central = part["centralised"]
            for row in part["federated"]:
                lines.append(
                    f"| {dataset} | {name} | {row['epsilon']} | {row['sigma']} | "
                    f"{row['accuracy']:.4f} | {row['auc']:.4f} | {central['accuracy']:.4f} | "
                    f"{central['auc']:.4f} | {row['gap_points']:+.2f} |"
                )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(DATASETS), 2, figsize=(10, 4 * len(DATASETS)))
    finite = [epsilon for epsilon in EPSILONS if not math.isinf(epsilon)]
    for row_axes, dataset in zip(axes, DATASETS, strict=True):
        for axis, metric in zip(row_axes, ("accuracy", "auc"), strict=True):
            for name, style in zip(SPLITS, ("o-", "s--"), strict=True):
                part = results[dataset][name]
                rows = part["federated"]
                values = [row[metric] for row in rows[: len(finite)]]
                axis.plot(finite, values, style, label=f"federated, {name} split")
                axis.axhline(rows[-1][metric], linestyle=":", color="grey")
                axis.axhline(part["centralised"][metric], color="black", linewidth=0.8)
            axis.set_xscale("log", base=2)
            axis.set_xlabel("ε (δ = 1e-5)")
            axis.set_ylabel(f"test {metric}")
            axis.set_title(f"{dataset}: black = centralised, dotted = federated ε = ∞", fontsize=9)
            axis.legend(loc="lower right", fontsize=8)
    figure.suptitle("Federated DP logistic regression across 4 hospitals (scikit-learn data)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _rounded(score: Score) -> dict[str, float]:
    return {"accuracy": round(score.accuracy, 4), "auc": round(score.auc, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="noise seeds averaged per point")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="where the PNG goes")
    arguments = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(arguments.seeds)
    print(table(results))
    plot(results, arguments.plot)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["plot"] = str(arguments.plot)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
