"""The stubs `emrchain/_core/_*.pyi` state the interface both twins share; each compiled module
and its reference twin must match its stub: the same public functions and classes (one added
to one side only fails), the same parameters (names, kinds, defaults), the same public methods
and attributes, and, for the reference twin, the same annotations text for text (the compiled
functions carry none, so their types are the stub's). mypy types every caller against the
stubs, so a drift here would be a wrong type there.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import emrchain._core as core
from tests.core.conftest import import_twin_module

CORE_DIRECTORY = Path(core.__file__).parent
STUBS = sorted(CORE_DIRECTORY.glob("_*.pyi"))
Parameter = tuple[str, str, str | None, str | None]
"""(name, kind, default source or None, annotation source or None)."""


def _stub_tree(stub: Path) -> ast.Module:
    return ast.parse(stub.read_text(), filename=str(stub))


def _stub_parameters(function: ast.FunctionDef) -> list[Parameter]:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    defaults += arguments.defaults
    rows = [
        (
            argument,
            "POSITIONAL_ONLY" if argument in arguments.posonlyargs else "POSITIONAL_OR_KEYWORD",
            default,
        )
        for argument, default in zip(positional, defaults, strict=True)
    ]
    rows += [
        (argument, "KEYWORD_ONLY", default)
        for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    ]
    return [
        (
            argument.arg,
            kind,
            None if default is None else ast.unparse(default),
            None if argument.annotation is None else ast.unparse(argument.annotation),
        )
        for argument, kind, default in rows
    ]


def _stub_return(function: ast.FunctionDef) -> str | None:
    return None if function.returns is None else ast.unparse(function.returns)


def _runtime_parameters(function: Callable[..., Any], annotated: bool) -> list[Parameter]:
    """The signature of a runtime function in the stub's terms; annotations only when the
    function has them (the reference twin, under `from __future__ import annotations`)."""
    rows = []
    for parameter in inspect.signature(function).parameters.values():
        default = None if parameter.default is parameter.empty else repr(parameter.default)
        annotation = parameter.annotation
        if not annotated or annotation is parameter.empty:
            annotation = None
        rows.append((parameter.name, parameter.kind.name, default, annotation))
    return rows


def _without_annotations(parameters: list[Parameter]) -> list[Parameter]:
    return [(name, kind, default, None) for name, kind, default, _ in parameters]


def _public_api(module: ModuleType, twin: ModuleType) -> dict[str, object]:
    """The functions and classes `module` defines itself and does not share with `twin`: a
    helper the compiled module imports from the reference twin is one object, not a twin pair."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or callable(value))
        and getattr(value, "__module__", None) == module.__name__
        and getattr(twin, name, None) is not value
    }


def _stub_api(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.ClassDef]:
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
    }


def _twins(stub: Path) -> tuple[ModuleType, ModuleType]:
    name = stub.stem  # "_merkle"
    compiled = import_twin_module(f"emrchain._core.{name}", compiled=True)
    reference = import_twin_module(f"emrchain._core.reference.{name[1:]}", compiled=False)
    return compiled, reference


def _check_function(
    stub: ast.FunctionDef, compiled: Callable[..., Any], reference: Callable[..., Any]
) -> None:
    expected = _stub_parameters(stub)
    assert _runtime_parameters(reference, annotated=True) == expected, stub.name
    assert inspect.signature(reference).return_annotation == _stub_return(stub), stub.name
    assert _runtime_parameters(compiled, annotated=False) == _without_annotations(expected), (
        stub.name
    )


def _stub_members(stub: ast.ClassDef) -> tuple[dict[str, ast.FunctionDef], set[str]]:
    """(methods, attributes) of a stub class: properties and annotated names are attributes."""
    methods: dict[str, ast.FunctionDef] = {}
    attributes: set[str] = set()
    for node in stub.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            attributes.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            is_property = any(
                isinstance(decorator, ast.Name) and decorator.id == "property"
                for decorator in node.decorator_list
            )
            if is_property:
                attributes.add(node.name)
            else:
                methods[node.name] = node
    return methods, attributes


def _runtime_members(cls: type) -> tuple[set[str], set[str]]:
    """(public methods, public data attributes) a class defines itself."""
    methods = {name for name, value in vars(cls).items() if callable(value)}
    attributes = {
        name
        for name, value in vars(cls).items()
        if inspect.isdatadescriptor(value) and not callable(value)
    }
    public = {name for name in methods | attributes if not name.startswith("_")}
    return methods & public, attributes & public


def _check_constructor_binding(cls: type, parameters: list[Parameter]) -> None:
    """A compiled class's `__init__` has no introspectable signature: call it with the stub's
    parameters by keyword. Any error then comes from the arguments' values (placeholders), not
    from binding them; a missing or unknown parameter is a binding TypeError naming
    `__init__()`."""
    names = [name for name, *_ in parameters if name != "self"]
    placeholders = dict.fromkeys(names, object())

    def binding_error(arguments: dict[str, object]) -> bool:
        try:
            cls(**arguments)
        except TypeError as error:
            return "__init__()" in str(error)
        except Exception:
            return False
        return False

    assert not binding_error(placeholders), f"{cls.__name__}({', '.join(names)})"
    assert binding_error({**placeholders, "unexpected_parameter": None})
    for name in names:
        arguments = {key: value for key, value in placeholders.items() if key != name}
        assert binding_error(arguments), f"{cls.__name__} accepts no {name}"


def _check_class(stub: ast.ClassDef, compiled: type, reference: type) -> None:
    methods, attributes = _stub_members(stub)
    public_methods = {name for name in methods if not name.startswith("_")}
    for twin in (compiled, reference):
        assert _runtime_members(twin) == (public_methods, attributes), twin
    for name, method in methods.items():
        if name == "__init__":
            parameters = _stub_parameters(method)
            signature = _runtime_parameters(reference.__init__, annotated=True)
            assert signature == parameters, f"{stub.name}.__init__"
            _check_constructor_binding(compiled, parameters)
            continue
        _check_function(method, getattr(compiled, name), getattr(reference, name))


@pytest.mark.parametrize("stub", STUBS, ids=[stub.stem for stub in STUBS])
def test_both_twins_match_the_stub(stub: Path) -> None:
    compiled, reference = _twins(stub)
    expected = _stub_api(_stub_tree(stub))
    assert set(_public_api(compiled, reference)) == set(expected), compiled.__name__
    assert set(_public_api(reference, compiled)) == set(expected), reference.__name__
    for name, node in expected.items():
        if isinstance(node, ast.ClassDef):
            _check_class(node, getattr(compiled, name), getattr(reference, name))
        else:
            _check_function(node, getattr(compiled, name), getattr(reference, name))


def test_every_compiled_module_has_a_stub() -> None:
    modules = {path.name.split(".")[0] for path in CORE_DIRECTORY.glob("_*.pyx")}
    assert modules == {stub.stem for stub in STUBS}


def _twin_exports(twin: ModuleType) -> set[str]:
    """The public functions and classes a twin module holds (from its parts)."""
    return {
        name
        for name, value in vars(twin).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or callable(value))
        and getattr(value, "__module__", "").startswith("emrchain._core.")
    }


def test_the_package_exports_every_stubbed_name_from_both_twin_modules() -> None:
    stubbed = {name for stub in STUBS for name in _stub_api(_stub_tree(stub))}
    for name in (core.CYTHON, core.PYTHON):
        twin = core.implementation(name)
        assert name == twin.IMPLEMENTATION
        assert _twin_exports(twin) == stubbed, name
    assert stubbed <= set(core.__all__)
    active = core.implementation(core.IMPLEMENTATION)
    for name in stubbed:
        assert getattr(core, name) is getattr(active, name), name
