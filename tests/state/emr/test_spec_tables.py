"""The spec's result-code table and bounds table say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from emrchain.schema import MAX_STUDY_PARTICIPANTS
from emrchain.state import ResultCode
from emrchain.state.emr import limits

SPEC = Path(__file__).resolve().parents[3] / "docs" / "spec" / "access-control.md"


def test_result_code_table_matches_result_codes() -> None:
    section = SPEC.read_text(encoding="utf-8").split("## 8. Result codes")[1]
    documented = {int(code): name for code, name in re.findall(r"\| (\d+) \| `([A-Z_]+)`", section)}
    # 40..71 are the EMR rules'; 72 (INVALID_VALIDATOR_KEY) is the pipeline's (state.md §4.3).
    emr_codes = {code.value: code.name for code in ResultCode if 40 <= code.value <= 71}
    assert documented == emr_codes


def test_bounds_table_matches_limits() -> None:
    section = SPEC.read_text(encoding="utf-8").split("## 5. Bounds")[1].split("## 6.")[0]
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\| (?:newest )?([\d,]+) \|", section)]
    assert numbers == [
        limits.MAX_ORGANIZATIONS,
        limits.MAX_MEMBERS_PER_ORGANIZATION,
        limits.MAX_KEYS_PER_MEMBER,
        limits.MAX_RECORDS_PER_PATIENT,
        limits.MAX_GRANTS_PER_PATIENT,
        limits.MAX_GRANTS_PER_RECORD,
        limits.MAX_BREAK_GLASS_SESSIONS_PER_PATIENT,
        limits.REVIEW_QUEUE_CAPACITY,
        limits.MAX_AMENDMENTS_PER_RECORD,
        limits.MAX_STUDIES,
        MAX_STUDY_PARTICIPANTS,
        limits.MAX_QUERIES_PER_STUDY,
        limits.MAX_RESEARCH_CONSENT_CHANGES,
    ]
