"""Everything the README shows a user is checked: its Python blocks run in order, in a temp
folder, and print exactly what it says they print; its shell commands parse (the install
extras exist, ``.ci/run`` runs the test command) and the own-photos pair runs on a folder of
generated photos; its command-line table matches ``--help``; its what's-where table names
every module and the import layering it states holds; the figures it quotes are the code's."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from nnx_testing import ROOT
from test_layout import _imports

import nnx
from nnx import cli

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def fenced_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, what the README says it prints) for every fenced block; the output
    is the text block after a line "prints", or the `...` of "prints `...`." after it."""
    found = list(FENCE.finditer(README))
    out = []
    for i, match in enumerate(found):
        lang, code = match[1], match[2]
        end = found[i + 1].start() if i + 1 < len(found) else len(README)
        between = README[match.end() : end].strip()
        printed = None
        if lang == "python":
            if between == "prints" and found[i + 1][1] == "text":
                printed = found[i + 1][2]
            elif inline := re.match(r"prints `([^`]*)`\.", between):
                printed = inline[1] + "\n"
        if lang != "text":
            out.append((lang, code, printed))
    return out


PYTHON = [(code, printed) for lang, code, printed in fenced_blocks() if lang == "python"]
SHELL = [code for lang, code, _ in fenced_blocks() if lang == "bash"]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else len(README)]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The README's Python blocks run one after another in one namespace, as a reader
    would type them, in a fresh folder; each block's stdout by index (None: skipped)."""
    namespace: dict = {"__name__": "__readme__"}
    outputs: dict[int, str | None] = {}
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    try:

        def run(index: int) -> str | None:
            for i in range(len(outputs), index + 1):
                code = PYTHON[i][0]
                if "sklearn" in code and importlib.util.find_spec("sklearn") is None:
                    outputs[i] = None
                    continue
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    exec(compile(code, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
                outputs[i] = buffer.getvalue()
            return outputs[index]

        yield run
    finally:
        os.chdir(here)


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_blocks_run_and_print_what_the_readme_says(session, index):
    printed = session(index)
    if printed is None:
        pytest.skip("this block needs scikit-learn (the sklearn extra), which is not installed")
    assert printed == PYTHON[index][1]


def test_every_python_block_shows_what_it_prints():
    assert len(PYTHON) >= 3 and all(printed for _, printed in PYTHON)


def _extras() -> dict[str, list[str]]:
    """pyproject.toml's extras: {name: [requirement, ...]} (tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = text.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    entries = re.findall(r"^([\w-]+) = \[(.*?)\]$", table, re.S | re.M)
    return {name: re.findall(r'"([^"]+)"', body) for name, body in entries}


def _commands() -> list[list[str]]:
    """Every command of the README's shell blocks, as argv lists (comments dropped, &&
    chains split)."""
    commands = []
    for block in SHELL:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands += [shlex.split(part) for part in line.split("&&")]
    return commands


def _nnx_argv(argv: list[str]) -> list[str] | None:
    if argv[0] == "nnx":
        return argv[1:]
    if argv[:3] == ["python3", "-m", "nnx"]:
        return argv[3:]
    return None


def test_every_shell_command_is_one_nnx_understands():
    extras = _extras()
    seen = set()
    for argv in _commands():
        if argv[:4] == ["python3", "-m", "pip", "install"]:
            (spec,) = argv[4:]
            wanted = re.fullmatch(r"\.\[([\w,]+)\]", spec)[1].split(",")
            assert set(wanted) <= set(extras), spec
            seen.add("pip")
        elif argv == ["python3", "-m", "pytest"]:
            seen.add("pytest")
        else:
            args = _nnx_argv(argv)
            assert args is not None, f"not an nnx command: {argv}"
            cli.build_parser().parse_args(args)  # exits (a failure here) if nnx does not take it
            seen.add(args[0])
    assert {"pip", "pytest", "demo", "train", "predict"} <= seen


def test_the_first_command_installs_what_training_on_photos_needs():
    extras = _extras()
    first = _commands()[0]
    wanted = re.fullmatch(r"\.\[([\w,]+)\]", first[4])[1].split(",")
    packages = " ".join(dep.lower() for extra in wanted for dep in extras[extra])
    for needed in ("pillow", "numba", "matplotlib"):  # images, fused kernels, learning curve
        assert needed in packages


def test_ci_runs_the_readmes_test_command():
    second = next(line for block in SHELL for line in block.splitlines() if "'.[dev]'" in line)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert second.strip() in ci


def _photos(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, rgb in {"apple": (200, 30, 30), "leaf": (30, 180, 40), "sky": (40, 60, 210)}.items():
        (root / "my_photos" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(rgb) + rng.integers(-40, 40, size=(30, 40, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / "my_photos" / name / f"IMG_{i:04d}.jpg")
    (root / "my_photos" / "notes.txt").write_text("not a picture")
    Image.fromarray(np.full((20, 20, 3), (190, 40, 40), np.uint8)).save(root / "photo.jpg")


def test_train_on_your_own_photos_then_predict_as_the_readme_says(tmp_path, monkeypatch, capsys):
    pytest.importorskip("PIL", reason="image folders need Pillow: pip install 'nnx-nets[images]'")
    (block,) = [code for code in SHELL if "nnx predict" in code]
    commands = [_nnx_argv(shlex.split(line.split("  #", 1)[0])) for line in block.splitlines()]
    _photos(tmp_path)
    monkeypatch.chdir(tmp_path)
    for args in commands:
        assert cli.main([*args, "--quiet"] if args[0] == "train" else args) == 0
    out = capsys.readouterr().out
    for name in ("model.npz", "history.json", "history.csv", "learning_curve.png"):
        assert (tmp_path / "my_run" / name).is_file()
    assert "notes.txt (not an image file extension)" in out  # skipped and listed
    # the README's example line, with its numbers and runner-up names left open: the red
    # photo must come out as an apple, in that format
    example = re.search(r"prints a line per picture: `([^`]*)`", README)[1]
    shape = re.sub(r"\d+(?:\\\.\d+)?", "[0-9.]+", re.escape(example))
    shape = shape.replace("sky", r"\w+").replace("leaf", r"\w+")
    assert re.fullmatch(shape, out.strip().splitlines()[-1]), (example, out)


def _help_defaults(command: str, monkeypatch) -> dict[str, str]:
    """{option: the default its --help shows} for one subcommand, from the help text itself."""
    monkeypatch.setenv("COLUMNS", "400")  # no help text wraps
    parser = cli.build_parser()
    text = parser._subparsers._group_actions[0].choices[command].format_help()
    entries = re.split(r"\n(?=  -)", text.split("options:\n", 1)[1])  # one entry per option
    options = {}
    for entry in entries:
        entry = " ".join(entry.split())
        match = re.match(r"(--[\w-]+).*\(default: (.*)\)$", entry)
        if match:
            options[match[1]] = match[2]
    return options


@pytest.mark.parametrize("command", ["demo", "train", "predict", "info", "bench"])
def test_the_cli_table_matches_help(command, monkeypatch):
    table = section("Command line")
    (row,) = [line for line in table.splitlines() if line.startswith(f"| `nnx {command}")]
    defaults = _help_defaults(command, monkeypatch)
    parser = cli.build_parser()._subparsers._group_actions[0].choices[command]
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert set(defaults) == options, "every option's --help shows its default"
    for option, default in defaults.items():
        where = row if option != "--debug" else table
        assert f"`{option}` {default}" in where, f"README lacks `{option}` {default} for nnx {command}"
    assert set(re.findall(r"`(--[\w-]+)`", row)) <= options  # and names no option nnx lacks


def test_whats_where_names_every_module_and_the_layering_holds():
    table = section("What's where")
    layers: dict[str, str] = {}
    layer = ""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 3 or cells[0] == "layer":
            continue
        layer = cells[0] or layer
        for path in re.findall(r"`(nnx/[\w/]+\.py)`", cells[1]):
            module = path[:-3].replace("/", ".").removesuffix(".__init__")
            layers[module] = layer
    package = Path(nnx.__file__).parent
    modules = {
        ".".join(("nnx", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        for p in package.rglob("*.py")
    }
    assert modules - {"nnx"} == set(layers)
    order = ["application", "core", "backends", "shared"]
    upward = [
        f"{source} ({layers[source]}) imports {target} ({layers[target]})"
        for source, targets in _imports().items()
        if source != "nnx"
        for target in targets - {"nnx"}
        if order.index(layers[target]) < order.index(layers[source])
    ]
    assert upward == []


def test_the_figures_the_readme_quotes_are_the_codes():
    from nnx import data, io

    assert "over 64 MiB" in README and data.MAX_IMAGE_BYTES == 64 * 2**20
    listed = re.search(r"\*\*Read:\*\* `([^`]*)`", README)[1].split()
    assert tuple(listed) == data.IMAGE_EXTENSIONS
    assert io.MAX_PARAMETERS == 2**26 and io.MAX_META_CHARS == 2**23
    assert "at most 2**26 parameters, 2**23 characters of metadata" in README
    assert f"{io.LOAD_MEMORY_BOUND / 2**30:.2f} GiB at the limits" in README
    for name in sorted(set(re.findall(r"`(nnx\.[\w.]+)", README))):
        if name == "nnx.sklearn.NNXClassifier" and importlib.util.find_spec("sklearn") is None:
            continue
        module, _, attr = name.rpartition(".")
        target = importlib.import_module(module) if module != "nnx" else nnx
        assert hasattr(target, attr) or importlib.util.find_spec(name), name


def test_the_api_table_lists_real_parameters():
    api = section("API")
    for method, listed in re.findall(r"`(fit|load_images)\(([^`]*)\)`", api):
        function = nnx.Sequential.fit if method == "fit" else nnx.data.load_images
        parameters = inspect.signature(function).parameters
        for part in listed.split(","):
            assert part.strip().split("=")[0] in parameters, f"{method} has no parameter {part.strip()}"
    for row in ("| `predict_proba`", "| `parameters()`"):
        (line,) = [line for line in api.splitlines() if line.startswith(row)]
        for method in re.findall(r"`(\w+)(?:\([^`]*\))?`", line.split(" | ")[0]):
            assert callable(getattr(nnx.Sequential, method, None) or getattr(nnx, method)), method


def test_the_readme_is_short_and_its_links_lead_somewhere():
    assert README.count("\n") <= 170  # "about 150": usage only; results and internals live elsewhere
    for text, base in ((README, ROOT), *(((ROOT / p).read_text(), (ROOT / p).parent) for p in LINKED)):
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            assert (base / target).exists(), target


LINKED = ("benchmarks/README.md", "kernels/README.md")
