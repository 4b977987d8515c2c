"""One organisation's local contribution to a study query (`docs/spec/analytics.md` §4).

Pure functions, apart from the noise: the values a query reads (one per patient), the exact
local aggregate as an integer vector in fixed point (thousandths), the noise scale OpenDP
calibrates for the query's (epsilon, delta) and sensitivity, and this organisation's share of
that noise. Only the noisy (and then masked) vector leaves the hospital.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from emrchain.schema import DELTA_UNITS_PER_ONE, EPSILON_UNITS_PER_ONE, QueryType

MILLI = 1_000
"""Values are fixed point in thousandths: 5.43 mmol/L is 5430."""


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """What a committed STUDY_QUERY asks (its payload fields)."""

    query_type: QueryType
    measure: str
    lower_milli: int
    upper_milli: int
    bins: int
    epsilon: int
    """Millionths."""
    delta: int
    """Units of 10^-12."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of a measure in one decrypted record."""

    patient_id: bytes
    value_milli: int
    height: int
    """The record's anchoring height: a patient's most recent value is the one used."""


def observation_of(resource: Mapping[str, Any], measure: str) -> int | None:
    """The value in thousandths of a FHIR Observation coded `measure` with a numeric
    valueQuantity; None for any other resource."""
    if resource.get("resourceType") != "Observation":
        return None
    codings = resource.get("code", {}).get("coding", [])
    if not isinstance(codings, list) or not any(
        isinstance(coding, dict) and coding.get("code") == measure for coding in codings
    ):
        return None
    quantity = resource.get("valueQuantity", {})
    value = quantity.get("value") if isinstance(quantity, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(value * MILLI)


def latest_per_patient(observations: Iterable[Observation]) -> dict[bytes, int]:
    """One value per patient (the most recently anchored): a patient is the unit of privacy."""
    latest: dict[bytes, Observation] = {}
    for observation in observations:
        kept = latest.get(observation.patient_id)
        if kept is None or observation.height >= kept.height:
            latest[observation.patient_id] = observation
    return {patient: observation.value_milli for patient, observation in latest.items()}


def _clamp(value: int, query: QuerySpec) -> int:
    return min(max(value, query.lower_milli), query.upper_milli)


def histogram_bin(value: int, query: QuerySpec) -> int:
    """Equal-width bins over [lower, upper]; values outside clamp into the end bins."""
    span = query.upper_milli - query.lower_milli
    index = (_clamp(value, query) - query.lower_milli) * query.bins // span
    return min(index, query.bins - 1)


def local_aggregate(query: QuerySpec, values: Iterable[int]) -> list[int]:
    """The exact local statistic as integers: count [n]; sum [clamped sum]; mean [clamped sum,
    n] (released together, divided by the aggregator); histogram [n per bin]."""
    chosen = list(values)
    if query.query_type == QueryType.COUNT:
        return [len(chosen)]
    if query.query_type == QueryType.HISTOGRAM:
        counts = [0] * query.bins
        for value in chosen:
            counts[histogram_bin(value, query)] += 1
        return counts
    total = sum(_clamp(value, query) for value in chosen)
    return [total] if query.query_type == QueryType.SUM else [total, len(chosen)]


def sensitivities(query: QuerySpec) -> list[tuple[int, int]]:
    """(first coordinate, L2 sensitivity) of each part the budget is split over, adding or
    removing one patient: a count moves by 1, a clamped sum by at most max(|lower|, |upper|) =
    upper (bounds are unsigned), a histogram by 1 in one bin. A mean spends half its budget on
    its sum and half on its count."""
    if query.query_type == QueryType.SUM:
        return [(0, query.upper_milli)]
    if query.query_type == QueryType.MEAN:
        return [(0, query.upper_milli), (1, 1)]
    return [(0, 1)]


@functools.lru_cache(maxsize=256)
def gaussian_scale(sensitivity: int, epsilon: float, delta: float) -> float:
    """The standard deviation of the Gaussian mechanism OpenDP certifies (epsilon, delta)-DP
    for at this L2 sensitivity: zCDP of the Gaussian, converted to approximate DP at `delta`,
    the smallest scale that meets `epsilon` by OpenDP's binary search."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=float))

    def mechanism(scale: float) -> Any:
        gaussian = dp.m.make_gaussian(*space, scale=scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)

    # Below 1/20 of the sensitivity the zCDP rho overflows OpenDP's conversion; no budget a
    # study may hold (epsilon <= 100) needs a scale that small.
    bounds = (sensitivity / 20, sensitivity * 1e6)
    scale = dp.binary_search_param(
        mechanism, d_in=float(sensitivity), d_out=(epsilon, delta), bounds=bounds
    )
    return float(scale)


def noise_scales(query: QuerySpec, participants: int) -> list[float]:
    """Per coordinate, the standard deviation of THIS organisation's noise: the total scale
    divided by sqrt(participants), so the n independent shares sum to the calibrated total."""
    parts = sensitivities(query)
    epsilon = query.epsilon / EPSILON_UNITS_PER_ONE / len(parts)
    delta = query.delta / DELTA_UNITS_PER_ONE / len(parts)
    width = query.bins if query.query_type == QueryType.HISTOGRAM else len(parts)
    scales = [0.0] * width
    for index, (first, sensitivity) in enumerate(parts):
        total = gaussian_scale(max(sensitivity, 1), epsilon, delta)
        last = width if index == len(parts) - 1 else parts[index + 1][0]
        for coordinate in range(first, last):
            scales[coordinate] = total / math.sqrt(participants)
    return scales


def add_noise(vector: list[int], scales: list[float]) -> list[int]:
    """`vector` plus discrete Gaussian noise of the given scales (OpenDP's sampler)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    noisy = []
    for value, scale in zip(vector, scales, strict=True):
        measurement = dp.m.make_gaussian(
            dp.atom_domain(T=int), dp.absolute_distance(T=float), scale=scale
        )
        noisy.append(int(measurement(value)))
    return noisy


def released(query: QuerySpec, total: list[int]) -> dict[str, Any]:
    """The figures the aggregator releases from the noisy sum of all contributions."""
    if query.query_type == QueryType.COUNT:
        return {"count": total[0]}
    if query.query_type == QueryType.SUM:
        return {"sum": total[0] / MILLI}
    if query.query_type == QueryType.MEAN:
        mean = total[0] / MILLI / total[1] if total[1] > 0 else None
        return {"sum": total[0] / MILLI, "count": total[1], "mean": mean}
    width = (query.upper_milli - query.lower_milli) / query.bins / MILLI
    edges = [query.lower_milli / MILLI + width * index for index in range(query.bins + 1)]
    return {"histogram": total, "bin_edges": edges}
