"""The package layering of `emrchain`, declared once here and enforced (issue #16).

Every module is parsed with `ast`; every import — at module level, inside functions, under
`TYPE_CHECKING`, or a literal `importlib.import_module("emrchain....")` — is mapped to the
package it reaches (`emrchain.<package>`; a top-level module such as `emrchain/invariants.py`
is its own package). A package may import only packages of lower layers, or a package of its own
layer when that edge is listed in SAME_LAYER_EDGES. `docs/ARCHITECTURE.md` ("Layers") shows the
same table; a test below checks that it does.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import emrchain

PACKAGE_ROOT = Path(emrchain.__file__).parent
ARCHITECTURE = PACKAGE_ROOT.parent / "docs" / "ARCHITECTURE.md"


@dataclass(frozen=True)
class Layer:
    name: str
    packages: frozenset[str]


def _layer(name: str, *packages: str) -> Layer:
    return Layer(name, frozenset(packages))


LAYERS = (
    _layer("vocabulary", "schema", "invariants", "throttled_log", "metrics"),
    _layer("compiled core", "_core"),
    _layer("cryptography", "crypto"),
    _layer("data types", "types"),
    _layer("keys and settings", "keystore", "config"),
    _layer("protocols", "consensus", "api", "fhir", "mempool", "p2p"),
    _layer("persistence", "store", "storage"),
    _layer("application", "state"),
    _layer("services", "hsm", "records", "client", "backup", "statesync", "console", "analytics"),
    _layer("RPC", "rpc"),
    _layer("node", "node"),
    _layer("tooling", "sim", "devnet", "bench", "portal", "cli"),
)
"""Lowest first: a package may import the packages of every layer before its own."""

SAME_LAYER_EDGES = frozenset(
    {
        ("config", "keystore"),  # node homes load and write key files
        ("records", "hsm"),  # the record service holds its KEK ring in the HSM worker
        ("records", "client"),  # a custodian checks a handed wrap against the envelope format
        ("backup", "records"),  # no backup while a KEK rotation moves wraps (its state file)
        ("analytics", "records"),  # the study worker decrypts its custody records in memory
        ("analytics", "client"),  # the aggregator fetches contributions as the study's sponsor
        ("bench", "devnet"),  # benchmarks drive the devnet harness
        ("cli", "bench"),  # `emrchain bench ...`
        ("cli", "devnet"),  # `emrchain devnet ...`
        ("cli", "portal"),  # `emrchain portal`
    }
)
"""(importer, imported) pairs allowed within one layer; they must stay acyclic."""

ROOT = "emrchain"
"""The root package (`emrchain/__init__.py`): it imports none of its packages."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    line: int
    module: str = ""
    """The module (or module.name) imported, e.g. `emrchain.types.block.Block`."""


def package_of(relative: Path) -> str:
    """`state/emr/access.py` -> "state"; `invariants.py` -> "invariants"; `__init__.py` -> root."""
    if len(relative.parts) == 1:
        return ROOT if relative.name == "__init__.py" else relative.stem
    return relative.parts[0]


def module_name(relative: Path) -> tuple[str, bool]:
    """(dotted module name, is a package `__init__`) of a file relative to `emrchain/`."""
    parts = [ROOT, *relative.with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) of every import in `tree`, wherever it sits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            # Each name may be a submodule (`from emrchain import _core`): yield base.name.
            base = _resolve_from(node, module, is_package)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            literal = _leading_literal(node.args[0])
            if literal is not None:
                yield literal, node.lineno


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _is_import_module(function: ast.expr) -> bool:
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    return name in ("import_module", "__import__")


def _leading_literal(argument: ast.expr) -> str | None:
    """The module name a call imports, or its literal start for an f-string."""
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.JoinedStr) and argument.values:
        first = argument.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def edges_of_source(source: str, relative: Path) -> list[Edge]:
    """The package edges one module's source makes (imports within its own package excluded)."""
    module, is_package = module_name(relative)
    importer = package_of(relative)
    found = []
    for name, line in imported_modules(ast.parse(source), module, is_package):
        parts = name.split(".")
        if parts[0] != ROOT or len(parts) < 2 or not parts[1]:
            continue
        edge = Edge(importer, parts[1], f"emrchain/{relative}", line, name)
        if parts[1] != importer and edge not in found:
            found.append(edge)
    return found


@functools.cache
def package_edges(root: Path = PACKAGE_ROOT) -> tuple[Edge, ...]:
    """Every cross-package import of every module under `root` (parsed once per run)."""
    edges: list[Edge] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        edges += edges_of_source(path.read_text(encoding="utf-8"), relative)
    return tuple(edges)


def discovered_packages(root: Path = PACKAGE_ROOT) -> set[str]:
    """Every package directory and top-level module under `emrchain/`."""
    packages = {path.parent.name for path in root.glob("*/__init__.py")}
    packages |= {path.stem for path in root.glob("*.py") if path.name != "__init__.py"}
    return packages


def layer_index(layers: Iterable[Layer] = LAYERS) -> dict[str, int]:
    return {package: index for index, layer in enumerate(layers) for package in layer.packages}


def violations(
    edges: Iterable[Edge],
    layers: tuple[Layer, ...] = LAYERS,
    same_layer: frozenset[tuple[str, str]] = SAME_LAYER_EDGES,
) -> list[str]:
    """One message per edge that breaks the layering: file, line and the rule it breaks."""
    index = layer_index(layers)
    messages = []
    for edge in edges:
        where = f"{edge.path}:{edge.line}: {edge.source} imports {edge.target}"
        if edge.source == ROOT:
            messages.append(f"{where}: the root package imports none of its packages")
            continue
        if edge.source not in index or edge.target not in index:
            unknown = edge.source if edge.source not in index else edge.target
            messages.append(f"{where}: package {unknown!r} is in no layer (declare it)")
            continue
        source_layer, target_layer = index[edge.source], index[edge.target]
        rule = (
            f"{edge.source} is in layer {source_layer + 1} ({layers[source_layer].name}), "
            f"{edge.target} in layer {target_layer + 1} ({layers[target_layer].name})"
        )
        if target_layer > source_layer:
            messages.append(f"{where}: {rule}; a package imports only lower layers")
        elif target_layer == source_layer and (edge.source, edge.target) not in same_layer:
            messages.append(f"{where}: {rule}; this same-layer edge is not allowed")
    return list(dict.fromkeys(messages))  # `from x import a, b` is one message, not two


PRIVATE_CORE = re.compile(r"^emrchain\._core\.(_\w+|reference)(\.|$)")
"""The compiled modules and the reference twin: outside `_core`, only the names
`emrchain/_core/__init__.py` re-exports are used, so the twin chosen at import is the one run."""


def private_core_imports(edges: Iterable[Edge]) -> list[str]:
    return [
        f"{edge.path}:{edge.line}: imports {edge.module}: outside _core, use only the names "
        "emrchain._core re-exports"
        for edge in edges
        if edge.target == "_core" and PRIVATE_CORE.match(edge.module)
    ]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None when it is acyclic."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


def graph_of(edges: Iterable[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    return graph


# -- the declaration and the code -------------------------------------------------------------


def test_every_package_is_declared_once() -> None:
    declared = [package for layer in LAYERS for package in layer.packages]
    assert len(declared) == len(set(declared)), "a package is declared in two layers"
    assert set(declared) == discovered_packages()


def test_same_layer_edges_are_within_one_layer_and_acyclic() -> None:
    index = layer_index()
    for source, target in SAME_LAYER_EDGES:
        assert index[source] == index[target], (source, target)
    pairs = [Edge(source, target, "SAME_LAYER_EDGES", 0) for source, target in SAME_LAYER_EDGES]
    assert find_cycle(graph_of(pairs)) is None


def test_the_checker_sees_every_module_and_nested_imports() -> None:
    edges = {(edge.path, edge.target) for edge in package_edges()}
    assert ("emrchain/rpc/node_view.py", "config") in edges  # under TYPE_CHECKING only
    assert ("emrchain/records/key_rings.py", "hsm") in edges  # inside a function only
    assert ("emrchain/store/block_store.py", "_core") in edges  # `from emrchain import _core`
    assert len({path for path, _ in edges}) > 100


def test_no_import_breaks_the_layering() -> None:
    problems = violations(package_edges())
    assert not problems, "\n".join(problems)


def test_only_the_core_imports_its_compiled_modules_and_twin() -> None:
    problems = private_core_imports(package_edges())
    assert not problems, "\n".join(problems)
    bad = "from emrchain._core import _txcheck\nfrom emrchain._core.reference import merkle\n"
    found = private_core_imports(edges_of_source(bad, Path("mempool/fake.py")))
    assert [problem.split(":")[1] for problem in found] == ["1", "2"]


UPPER_SUBPACKAGES = {"state": "emr"}
"""Within a package, a sub-package above the rest of it: the block pipeline (`state/*.py`) never
imports the EMR rules (`state/emr/`) that plug into it."""


def subpackage_violations(source: str, relative: Path) -> list[str]:
    package = relative.parts[0]
    upper = UPPER_SUBPACKAGES.get(package)
    if upper is None or (len(relative.parts) > 2 and relative.parts[1] == upper):
        return []
    module, is_package = module_name(relative)
    forbidden = f"{ROOT}.{package}.{upper}"
    return [
        f"emrchain/{relative}:{line}: imports {name}: {package}/{upper}/ is a layer above the "
        f"rest of {package}/"
        for name, line in imported_modules(ast.parse(source), module, is_package)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


def test_the_block_pipeline_never_imports_the_emr_rules() -> None:
    problems = []
    for package in UPPER_SUBPACKAGES:
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            problems += subpackage_violations(source, path.relative_to(PACKAGE_ROOT))
    assert not problems, "\n".join(problems)
    bad = "from emrchain.state.emr import handlers\nfrom .emr.tables import read_record\n"
    assert len(subpackage_violations(bad, Path("state/pipeline.py"))) == 2
    assert subpackage_violations(bad, Path("state/emr/access.py")) == []


def test_there_is_no_cycle_among_packages() -> None:
    assert find_cycle(graph_of(package_edges())) is None


# -- the checker fails on a bad edge ----------------------------------------------------------

BAD_STORE_MODULE = """
from typing import TYPE_CHECKING
from emrchain.types.block import Block
from . import layout
if TYPE_CHECKING:
    from emrchain.state.view import OverlayStateView, StateView
def later():
    from ..node import chain
    import importlib
    importlib.import_module("emrchain.rpc.server")
"""


def test_the_checker_names_file_line_and_rule_of_a_bad_edge() -> None:
    edges = edges_of_source(BAD_STORE_MODULE, Path("store/fake.py"))
    assert [(edge.target, edge.line) for edge in edges] == [
        ("types", 3),
        ("state", 6),
        ("state", 6),
        ("node", 8),
        ("rpc", 10),
    ]
    problems = violations(edges)
    assert len(problems) == 3  # one for line 6, though it imports two names
    assert problems[0] == (
        "emrchain/store/fake.py:6: store imports state: store is in layer 7 (persistence), "
        "state in layer 8 (application); a package imports only lower layers"
    )
    assert problems[1].startswith("emrchain/store/fake.py:8: store imports node")


def test_the_checker_refuses_an_unlisted_same_layer_edge_and_an_undeclared_package() -> None:
    source = "import emrchain.mempool.pool\nimport emrchain.newthing\n"
    edges = edges_of_source(source, Path("p2p/fake.py"))
    problems = violations(edges)
    assert problems[0].endswith("this same-layer edge is not allowed")
    assert problems[1].endswith("package 'newthing' is in no layer (declare it)")
    root_import = edges_of_source("from emrchain import state\n", Path("__init__.py"))
    assert violations(root_import)[0].endswith("the root package imports none of its packages")


def test_the_cycle_check_finds_a_cycle() -> None:
    edges = [Edge("a", "b", "x", 1), Edge("b", "c", "x", 2), Edge("c", "a", "x", 3)]
    assert find_cycle(graph_of(edges)) == ["a", "b", "c", "a"]
    assert find_cycle(graph_of(edges[:2])) is None


# -- the documentation shows the same layering ------------------------------------------------


def documented_layers(text: str) -> tuple[tuple[Layer, ...], frozenset[tuple[str, str]]]:
    """The "Layers" table of ARCHITECTURE.md: `| n | name | packages | same-layer edges |`,
    highest layer first."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, Layer] = {}
    same_layer: set[tuple[str, str]] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        packages = re.findall(r"`(\w+)(?:/|\.py)?`", cells[2])
        rows[int(cells[0])] = Layer(cells[1], frozenset(packages))
        same_layer |= set(re.findall(r"`(\w+)` → `(\w+)`", cells[3]))
    layers = tuple(rows[number] for number in sorted(rows))
    assert sorted(rows) == list(range(1, len(rows) + 1)), "layers are numbered 1..n"
    return layers, frozenset(same_layer)


def test_architecture_shows_the_declared_layering() -> None:
    layers, same_layer = documented_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    assert layers == LAYERS
    assert same_layer == SAME_LAYER_EDGES


def test_the_documentation_check_can_fail() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    moved = text.replace("| `store/`, `storage/` |", "| `storage/` |", 1)
    assert moved != text
    layers, _ = documented_layers(moved)
    assert layers != LAYERS


def documented_packages(text: str) -> set[str]:
    """The first column of the "Packages" table: `emrchain/<package>/` or `emrchain/<m>.py`."""
    section = text.split("\n## Packages", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `emrchain/(\w+)(?:/|\.py)`", section, re.MULTILINE))


def test_architecture_describes_every_package() -> None:
    assert documented_packages(ARCHITECTURE.read_text(encoding="utf-8")) == discovered_packages()
