"""Invariants the code checks at run time, always (not `assert`, which `python -O` drops).

A violation means a bug, never bad input: bad input is refused with its own error long before
it could break one of these. Each check is cheap (O(1) where it runs per transaction) and names
the invariant, as the spec numbers or words it, so a failure points at the rule that broke.

    if queue.entries and queue.entries[0].nonce != queue.committed_nonce + 1:
        raise InvariantViolation("pending nonces are contiguous", f"sender {sender.hex()}")

or, where the check is one condition, `invariant(condition, name, detail)`. The consensus core
and runtime number theirs as docs/spec/consensus.md §5.1 does ("C1 ...", "R1 ...").
"""

from __future__ import annotations


class InvariantViolation(AssertionError):  # noqa: N818 - named for what it reports
    """An invariant of the code does not hold: a bug. Subclasses AssertionError so that tests
    and supervisors treat it like a failed assertion."""

    def __init__(self, invariant: str, detail: str = "") -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"invariant violated: {invariant}" + (f" ({detail})" if detail else ""))


def invariant(condition: bool, name: str, detail: str = "") -> None:
    """Raise InvariantViolation naming `name` unless `condition` holds."""
    if not condition:
        raise InvariantViolation(name, detail)
