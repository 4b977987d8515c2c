"""Whether the tests run in CI, where a missing service or compiled module fails instead of
skipping (`CI=true`, as `.ci/run` and most CI systems set it; `CI=1` too)."""

from __future__ import annotations

import os


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")
