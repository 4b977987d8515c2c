"""The federated model against epsilon (issue #22 part 5): `scripts/bench-federated`.

For the IID and the label-skewed split of scikit-learn's breast-cancer data across 4 hospitals,
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
from pathlib import Path

from emrchain.analytics.experiment import (
    EPSILONS,
    Score,
    breast_cancer_split,
    centralised_score,
    mean_federated_score,
)
from emrchain.analytics.federated import DEFAULT_DELTA, TrainingPlan, noise_multiplier

DEFAULT_PLOT = Path("docs/benchmarks/federated-epsilon.png")
SPLITS = {"iid": False, "skewed": True}


def run(seeds: int) -> dict[str, object]:
    rounds = TrainingPlan(math.inf).rounds
    results: dict[str, object] = {"delta": DEFAULT_DELTA, "rounds": rounds, "seeds": seeds}
    for name, skewed in SPLITS.items():
        split = breast_cancer_split(skewed)
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


def table(results: dict[str, object]) -> str:
    lines = [
        "| split | ε | σ (× C) | accuracy | AUC | centralised accuracy | AUC | gap (points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SPLITS:
        part = results[name]
        assert isinstance(part, dict)
        central = part["centralised"]
        for row in part["federated"]:
            lines.append(
                f"| {name} | {row['epsilon']} | {row['sigma']} | {row['accuracy']:.4f} | "
                f"{row['auc']:.4f} | {central['accuracy']:.4f} | {central['auc']:.4f} | "
                f"{row['gap_points']:+.2f} |"
            )
    return "\n".join(lines)


def plot(results: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
    finite = [epsilon for epsilon in EPSILONS if not math.isinf(epsilon)]
    for axis, metric in zip(axes, ("accuracy", "auc"), strict=True):
        for name, style in zip(SPLITS, ("o-", "s--"), strict=True):
            part = results[name]
            assert isinstance(part, dict)
            rows = part["federated"]
            axis.plot(
                finite,
                [row[metric] for row in rows[: len(finite)]],
                style,
                label=f"federated, {name} split",
            )
            axis.axhline(rows[-1][metric], linestyle=":", color="grey")
            axis.axhline(part["centralised"][metric], color="black", linewidth=0.8)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("ε (δ = 1e-5)")
        axis.set_ylabel(f"test {metric}")
        axis.set_title(f"{metric}: black = centralised, dotted = federated ε = ∞")
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle("Federated DP logistic regression, breast cancer (sklearn), 4 hospitals")
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
