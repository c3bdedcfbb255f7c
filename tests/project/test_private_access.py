"""No nnx module reads or writes another module's private attributes: an ``x._name``
attribute access (``_name`` not a dunder) is allowed on ``self``/``cls``, inside a class on
another instance of that class when the class itself sets or defines ``_name``, and on
objects the module itself defines at its top level."""

import ast
from pathlib import Path

import nnx

PACKAGE = Path(nnx.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_attributes(cls: ast.ClassDef) -> set[str]:
    """What a class defines: its methods and class attributes, and what it sets on self/cls."""
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {
        t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    names |= {
        n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at the module's top level (its own objects)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _violations(path: Path) -> list[str]:
    """``file:line: ._name`` for each private attribute of another module's object."""
    tree = ast.parse(path.read_text())
    top = _module_names(tree)
    label = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE) else path.name
    found: list[str] = []

    def visit(node: ast.AST, allowed: set[str]) -> None:
        if isinstance(node, ast.ClassDef):
            allowed = allowed | _own_attributes(node)
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            ok = (isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in top)) or (
                node.attr in allowed
            )
            if not ok:
                found.append(f"{label}:{node.lineno}: .{node.attr}")
        for child in ast.iter_child_nodes(node):
            visit(child, allowed)

    visit(tree, set())
    return found


def test_no_module_touches_another_modules_private_attributes():
    violations = [v for path in sorted(PACKAGE.rglob("*.py")) for v in _violations(path)]
    assert violations == []


def test_the_rule_sees_a_private_access(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(model):\n    model._store([])\n    return model._lock\n")
    own = tmp_path / "own.py"
    own.write_text(
        "class A:\n    def __init__(self):\n        self._x = 1\n\n"
        "    def eq(self, o):\n        return o._x\n"
    )
    assert [v.split(": ")[1] for v in _violations(bad)] == ["._store", "._lock"]
    assert _violations(own) == []
