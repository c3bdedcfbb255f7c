"""The layout's rules, checked: dependencies between nnx modules run one way (no import
cycles; the model-file format does not import the model), and every nnx exception is
defined in nnx/errors.py."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import nnx

PACKAGE = Path(nnx.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("nnx", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """nnx module -> the nnx modules it imports (at the top or inside a function), by name;
    ``from . import x`` counts as importing ``nnx.x`` (a module) or ``nnx`` (a name in it)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                found.update(subs or [target])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnx"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("nnx"))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycles_between_modules():
    """No module reaches itself through what it imports; package nodes count (a module
    importing the package root, which imports it back, is a cycle)."""
    graph = _imports()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert cycles == []


def test_the_model_file_format_does_not_import_the_model():
    graph = _imports()
    assert "nnx.model" not in graph["nnx.io"] and "nnx.io" in graph["nnx.model"]
    assert not {"nnx.network", "nnx.training", "nnx.backends"} & graph["nnx.io"]


def test_every_nnx_exception_is_defined_in_errors():
    errors = importlib.import_module("nnx.errors")
    elsewhere = []
    for info in pkgutil.walk_packages(nnx.__path__, "nnx."):
        if info.name == "nnx.__main__":  # runs the command line when imported
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional package (numba, scikit-learn) missing here
            continue
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException):
                if value.__module__ == info.name and module is not errors:
                    elsewhere.append(f"{info.name}.{name}")
    assert elsewhere == []
    assert issubclass(errors.UnusableFileError, Exception)
