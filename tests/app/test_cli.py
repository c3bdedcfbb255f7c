"""The command line, run as a user runs it (subprocess)."""

import json

from nnx_testing import run

import nnx


def test_demo_quick_runs_and_reports():
    r = run("demo", "--quick", "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    for text in (
        "backend: numpy",
        "SYNTHETIC",
        "logistic regression 12288->1",
        "MLP 12288->50",
        "OR by one neuron",
        "AND by one neuron",
        "XOR by a 2-4-1 net",
        "ms/epoch",
    ):
        assert text in r.stdout


def test_info_json():
    r = run("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["backends"]["numpy"]["available"] is True
    assert tuple(info["backends"]) == nnx.backends.names()
    for name, entry in info["backends"].items():
        status = nnx.backends.available()[name]
        assert entry["available"] is status.available and entry["reason"] == status.reason
        assert ("install" in entry) is not status.available  # how to get a missing one


def test_bad_arguments_exit_2_one_line():
    r = run("demo", "--backend", "tpu")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("nnx: error:") and len(r.stderr.strip().splitlines()) == 1
