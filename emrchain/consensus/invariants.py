"""Always-on invariant checks of the consensus core and runtime (docs/spec/consensus.md §5.1).

In the style of TigerBeetle's assertions: each check is cheap, runs in production (not a bare
`assert`, which `python -O` strips), and names the invariant it guards, so that a violation
stops the process with the rule that broke instead of letting it sign or decide on a state
the proofs do not cover. The node's guard turns the exception into a halt with that reason.
"""

from __future__ import annotations


class InvariantViolation(AssertionError):  # noqa: N818 - named for what it reports
    """A numbered invariant of docs/spec/consensus.md §5.1 does not hold: a bug, never input."""


def invariant(condition: bool, name: str, detail: str = "") -> None:
    """Raise InvariantViolation naming `name` (e.g. "C1 ...") unless `condition` holds."""
    if not condition:
        raise InvariantViolation(f"invariant {name} violated{': ' + detail if detail else ''}")
