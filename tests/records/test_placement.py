"""The placement function (docs/spec/records.md §10) and the replication settings' parsing."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter

import pytest

from emrchain.config.replication_settings import FactorsByType, IpfsPeers
from emrchain.records.placement import PLACEMENT_LABEL, factor_of, holders, placement_order
from emrchain.schema import RecordType

ORGANIZATIONS = [f"hospital-{index}" for index in range(6)]


def test_custodians_then_the_patients_organisation_then_rendezvous_order() -> None:
    record_id = bytes(range(32))
    order = placement_order(record_id, ["hospital-3"], "hospital-1", reversed(ORGANIZATIONS))
    assert order[:2] == ["hospital-3", "hospital-1"]
    rest = sorted(
        set(ORGANIZATIONS) - {"hospital-3", "hospital-1"},
        key=lambda name: hashlib.sha256(PLACEMENT_LABEL + record_id + name.encode()).digest(),
    )
    assert order[2:] == rest
    # The patient's organisation is the custodian: listed once.
    same = placement_order(record_id, ["hospital-3"], "hospital-3", ORGANIZATIONS)
    assert same[0] == "hospital-3" and len(set(same)) == len(same) == len(ORGANIZATIONS)
    assert len(set(order)) == len(order) == len(ORGANIZATIONS)


def test_holders_skip_organisations_seen_down_and_stop_at_the_factor() -> None:
    order = ["a", "b", "c", "d"]
    assert holders(order, 2) == ["a", "b"]
    assert holders(order, 2, {"a"}) == ["b", "c"]
    assert holders(order, 9) == order
    with pytest.raises(ValueError):
        holders(order, 0)


def test_rendezvous_spreads_the_extra_copies_evenly() -> None:
    counts = Counter(
        placement_order(secrets.token_bytes(32), ["hospital-0"], None, ORGANIZATIONS)[1]
        for _ in range(3_000)
    )
    assert set(counts) == set(ORGANIZATIONS) - {"hospital-0"}
    assert min(counts.values()) > 3_000 / 5 * 0.8


def test_factor_by_record_type() -> None:
    by_type = dict(FactorsByType().parse(["imaging=3"]))
    assert factor_of(RecordType.IMAGING, 2, by_type) == 3
    assert factor_of(RecordType.LAB_RESULT, 2, by_type) == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("imaging=3", "must be an array"),
        (["imaging"], "record_type=copies"),
        (["x_ray=2"], "unknown record type"),
        (["imaging=0"], "copies must be 1..64"),
        (["imaging=2", "imaging=3"], "listed twice"),
    ],
)
def test_bad_factors_by_type_are_refused(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FactorsByType().parse(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["hospital-1"], "organisation=url"),
        (["Hospital=http://a:1"], "not an organisation id"),
        (["hospital-1=redis://a:1"], "not an http"),
        (["hospital-1=http://user:pw@a:1"], "not an http"),
        (["hospital-1=http://a:1", "hospital-1=http://b:1"], "listed twice"),
    ],
)
def test_bad_peers_are_refused(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IpfsPeers(4).parse(raw)


def test_peers_round_trip() -> None:
    kind = IpfsPeers(4)
    parsed = kind.parse(["hospital-1=http://127.0.0.1:5001"])
    assert parsed == (("hospital-1", "http://127.0.0.1:5001"),)
    assert kind.parse(kind.to_toml(parsed)) == parsed
