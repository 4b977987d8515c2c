"""The settings tables of `docs/spec/config.md`, written from the declarations.

Each `## [section]` of the reference is followed by its doc line and a table with one row per
setting: key, type with range and unit, default, meaning. `tests/config` checks the reference
holds exactly these tables; after changing a declaration, rewrite them with
`python -m emrchain.config.reference docs/spec/config.md`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from emrchain.config import toml_writer
from emrchain.config.node import SECTIONS, Section

TABLE_HEADER = "| key | type, range and unit | default | meaning |\n|---|---|---|---|\n"


def section_block(section: Section) -> str:
    """`## [name]`, its doc and its table, as the reference shows them."""
    rows = []
    defaults = section.factory()
    for key, spec in section.settings.items():
        default = toml_writer.format_value(spec.kind.to_toml(getattr(defaults, key)))
        cells = (f"`{section.name}.{key}`", spec.kind.describe(), f"`{default}`", spec.doc)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n")
    return f"## [{section.name}]\n\n{section.doc}\n\n{TABLE_HEADER}{''.join(rows)}"


def _block_pattern(name: str) -> re.Pattern[str]:
    """A section's heading, doc paragraph and table, up to the blank line after the table."""
    return re.compile(
        rf"^## \[{re.escape(name)}\]\n\n.*?\n\n(?:\|[^\n]*\n)+", re.MULTILINE | re.DOTALL
    )


def with_current_tables(reference: str) -> str:
    """`reference` with every section's block replaced by the one written from its settings;
    a section missing from the reference is an error (there is no place to put it)."""
    for section in SECTIONS:
        found = _block_pattern(section.name).search(reference)
        if found is None:
            raise ValueError(f"the reference has no ## [{section.name}] table")
        reference = reference[: found.start()] + section_block(section) + reference[found.end() :]
    return reference


def main(arguments: list[str]) -> int:
    path = Path(arguments[0])
    path.write_text(with_current_tables(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
