"""Every file path and every dotted `emrchain.` name the documentation names exists (issue #16:
docs that describe code that is not there).

Checked: `emrchain/...` paths, paths into the repository's own directories (`docs/`, `tests/`,
`scripts/`, `benchmarks/`, `configs/`), and source paths relative to the package
(`store/absence.py`, `_core/_anchors.pyx`: a first component that is one of emrchain's packages
and a Python or Cython file name). A `*` matches as a glob. Paths inside a node's home
(`config/node.toml`, `<home>/data/chain.db`) and domain tags (`emrchain/record-envelope/v1`) are
not files of the repository and are not checked.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import emrchain

PACKAGE_ROOT = Path(emrchain.__file__).parent
REPOSITORY = PACKAGE_ROOT.parent
DOCUMENTS = sorted(
    [*(REPOSITORY / "docs").rglob("*.md"), REPOSITORY / "README.md", REPOSITORY / "BENCHMARKS.md"]
)
REPOSITORY_DIRECTORIES = ("emrchain", "docs", "tests", "scripts", "benchmarks", "configs")
SOURCE_SUFFIXES = (".py", ".pyx", ".pxd", ".pyi")
PATH = re.compile(r"(?<![\w/.<>{}-])([\w*]+(?:/[\w.*-]+)+/?)")


def packages() -> set[str]:
    return {path.parent.name for path in PACKAGE_ROOT.glob("*/__init__.py")}


def checked_path(token: str, package_names: set[str]) -> Path | None:
    """The repository path `token` names, or None when it is not one this test checks."""
    token = token.rstrip(".")
    first, _, rest = token.partition("/")
    if first == "emrchain":
        if "-" in rest.split("/")[0]:
            return None  # a domain tag, not a package
        return REPOSITORY / token
    if first in REPOSITORY_DIRECTORIES:
        return REPOSITORY / token
    if first in package_names and token.endswith(SOURCE_SUFFIXES):
        return PACKAGE_ROOT / token
    return None


def exists(path: Path) -> bool:
    if "*" in str(path):
        return any(REPOSITORY.glob(str(path.relative_to(REPOSITORY))))
    return path.exists()


def named_paths(text: str, package_names: set[str]) -> Iterator[tuple[int, str, Path]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if "://" in line:
            line = re.sub(r"\w+://\S+", "", line)  # URLs
        for token in PATH.findall(line):
            path = checked_path(token, package_names)
            if path is not None:
                yield number, token, path


DOTTED = re.compile(r"(?<![\w.])emrchain(?:\.[A-Za-z_]\w*)+")


def resolves(dotted: str) -> bool:
    """`emrchain.a.b.name` is an importable module, or an attribute of the longest one."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for attribute in parts[end:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def shown(document: Path) -> str:
    inside = document.is_relative_to(REPOSITORY)
    return str(document.relative_to(REPOSITORY)) if inside else document.name


def stale_references(documents: list[Path]) -> list[str]:
    """`file:line: reference` for each path that does not exist and each dotted name that
    does not resolve."""
    package_names = packages()
    stale = []
    for document in documents:
        text = document.read_text(encoding="utf-8")
        stale += [
            f"{shown(document)}:{number}: {token}"
            for number, token, path in named_paths(text, package_names)
            if not exists(path)
        ]
        for number, line in enumerate(text.splitlines(), 1):
            stale += [
                f"{shown(document)}:{number}: {name}"
                for name in DOTTED.findall(line)
                if not resolves(name)
            ]
    return stale


def test_every_path_and_name_the_docs_use_exists() -> None:
    stale = stale_references(DOCUMENTS)
    assert not stale, "named in the docs but not in the code:\n" + "\n".join(stale)


def test_the_check_sees_the_kinds_of_reference_and_fails_on_stale_ones(tmp_path: Path) -> None:
    document = tmp_path / "stale.md"
    document.write_text(
        "The codec (`emrchain/schema/codec.py`, `_core/_txcheck.pyx`, `store/absence.py`)\n"
        "and `tests/consensus/test_purity.py`; `*/commands.py` and `emrchain/cli.py` are gone,\n"
        "as is the twin in `_core/fallback/anchors.py` and `node/devnet.py`. Not checked: a\n"
        "home's `config/node.toml`, the tag `emrchain/record-envelope/v1`, https://x.org/a/b.\n"
        "`emrchain.state.pipeline.BlockPipeline`, `emrchain.p2p`; gone: "
        "`emrchain.p2p.MsgpackPayloads`, `emrchain.rpc.signing`.\n",
        encoding="utf-8",
    )
    tokens = [token for _, token, _ in named_paths(document.read_text(), packages())]
    assert tokens == [
        "emrchain/schema/codec.py",
        "_core/_txcheck.pyx",
        "store/absence.py",
        "tests/consensus/test_purity.py",
        "emrchain/cli.py",
        "_core/fallback/anchors.py",
        "node/devnet.py",
    ]
    assert stale_references([document]) == [
        "stale.md:2: emrchain/cli.py",
        "stale.md:3: _core/fallback/anchors.py",
        "stale.md:3: node/devnet.py",
        "stale.md:5: emrchain.p2p.MsgpackPayloads",
        "stale.md:5: emrchain.rpc.signing",
    ]
