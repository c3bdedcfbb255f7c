"""Backend interface discipline, as Thinc's test_ops_consistency: every backend class
overrides only what ``Backend`` declares, with the same signature, and the registry is the
one list of backend names (the CLI and the tests' parametrisation take theirs from it)."""

import inspect
import re
from pathlib import Path

import pytest
from conftest import ALL_BACKENDS
from nnx_testing import python

import nnx
from nnx import cli
from nnx.backends import Backend, backend_class, names


def _declared(cls: type) -> dict:
    """Public methods and properties ``cls`` defines itself (what it adds or overrides)."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (callable(value) or isinstance(value, (property, staticmethod, classmethod)))
    }


def _signature(value) -> list[tuple]:
    """Parameter names, kinds and defaults (annotations aside) of a method."""
    function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", names())
def test_backends_override_only_declared_methods_with_the_same_signature(name):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name
    for klass in cls.__mro__[: cls.__mro__.index(Backend)]:
        for method, value in _declared(klass).items():
            assert method in vars(Backend), f"{klass.__name__}.{method} is not declared by Backend"
            base = vars(Backend)[method]
            assert type(value) is type(base), f"{klass.__name__}.{method} is a {type(value).__name__}"
            if not isinstance(value, property):
                assert _signature(value) == _signature(base), f"{klass.__name__}.{method}{_signature(value)}"


def test_every_method_the_base_declares_is_called():
    """No dead declarations (``Backend.zeros`` was one): each public method of the base is
    called somewhere in nnx."""
    source = "\n".join(p.read_text() for p in Path(nnx.__file__).parent.rglob("*.py"))
    for method in _declared(Backend):
        called = rf"(?:ops|self|super\(\))\.{method}\("  # ops., self.ops., gpu_ops., super().
        assert re.search(called, source), f"Backend.{method} is declared but never called"


def test_backend_classes_import_without_their_optional_packages():
    """CuPy and Numba are imported when a backend object is built, not with its class."""
    script = (
        "import sys\n"
        "for blocked in ('cupy', 'numba'):\n"
        "    sys.modules[blocked] = None\n"
        "from nnx.backends import backend_class, names\n"
        "print(sorted(backend_class(n).__name__ for n in names()))\n"
    )
    r = python(script, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sorted(backend_class(n).__name__ for n in names()))


def test_backend_names_come_from_the_registry():
    assert ALL_BACKENDS == names()
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for command in ("demo", "train", "predict"):
        (backend,) = [a for a in commands[command]._actions if "--backend" in a.option_strings]
        assert tuple(backend.choices) == ("auto", *names())
    (bench_backends,) = [a for a in commands["bench"]._actions if "--backends" in a.option_strings]
    assert tuple(bench_backends.default) == names()
    assert tuple(nnx.backends.available()) == names() and set(nnx.backends.AUTO_ORDER) == set(names())
