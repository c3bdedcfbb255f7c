"""`nnx bench` end to end on tiny sizes: every row, ratio and reference it promises.

Times here are meaningless (m = 16); the test checks the bookkeeping, not the speed.
"""

import json
import math
import sys

import pytest

from nnx import backends, cli
from nnx.app import bench


@pytest.fixture
def no_idle_wait(monkeypatch):
    monkeypatch.setattr(bench, "BLAS_IDLE_S", 0.0)


def _rows(result):
    return {(r["backend"], r["model"], r["x_dtype"]): r for r in result["rows"]}


def test_run_reports_every_row_and_ratio(no_idle_wait):
    names = [n for n in backends.names() if backends.available()[n].available]
    result = bench.run(names, ms=(16,), x_dtypes=("float32", "uint8"), repeats=1, with_torch=False)
    rows = _rows(result)
    assert set(rows) == {
        (n, model, dt) for n in names for model in bench.MODELS for dt in ("float32", "uint8")
    }
    for (name, model, x_dtype), row in rows.items():
        assert row["seconds"] > 0 and row["low"] <= row["seconds"] <= row["high"]
        assert row["examples_per_s"] == pytest.approx(16 / row["seconds"])
        ratios = row["ratios"]
        gpu = backends.get_backend(name).is_gpu
        read_ratio = ratios["x_read_vs_gpu_copy_bandwidth" if gpu else "x_read_vs_bandwidth"]
        assert math.isfinite(read_ratio) and read_ratio > 0
        assert ratios["speedup_vs_numpy"] == pytest.approx(
            rows[("numpy", model, x_dtype)]["seconds"] / row["seconds"]
        )
        if (model == "mlp" and x_dtype == "float32") or model == "softmax":  # raw pixels too
            assert ratios["cublas_products_time_over_epoch" if gpu else "blas_products_time_over_epoch"] > 0
        if x_dtype == "uint8":
            f32 = rows[(name, model, "float32")]["seconds"]
            assert ratios["speedup_vs_float32_input"] == pytest.approx(f32 / row["seconds"])
        assert "speedup_vs_torch_cpu" not in ratios and "speedup_vs_torch_cuda" not in ratios
    # the read reference is timed inside each group, so every group records its own
    for x_dtype in ("float32", "uint8"):
        limits = result["limits"][f"m=16,{x_dtype}"]
        for model in bench.MODELS:
            assert any(k.endswith(f"_{model}_group") and v > 0 for k, v in limits.items())
        assert limits["blas_softmax_products_gflops"] > 0  # K x 12288 products alone
        if any(backends.get_backend(n).is_gpu for n in names):
            assert result["limits"][f"gpu m=16,{x_dtype}"]["gpu_copy_read_write_gb_s"] > 0
    assert result["skipped_backends"] == {}
    json.dumps(result)  # everything in the record is JSON-able
    table = bench.format_table(result)
    assert "x_read_vs_bandwidth=" in table and "limits m=16,float32" in table


def test_cli_writes_json_and_reports_skipped_backends(no_idle_wait, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(
        [
            "bench",
            "--backends",
            "numpy,cupy",
            "--m",
            "8",
            "--dtype",
            "float32",
            "--repeats",
            "1",
            "--no-torch",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["complete"] is True
    cupy_runs = backends.available()["cupy"].available
    assert {r["backend"] for r in record["rows"]} == ({"numpy", "cupy"} if cupy_runs else {"numpy"})
    assert record["environment"]["python"]
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    if not cupy_runs:
        assert "cupy" in record["skipped_backends"] and "skipped: cupy" in printed


def test_checkpoint_gets_the_rows_so_far_after_every_group(no_idle_wait):
    seen = []
    final = bench.run(["numpy"], ms=(8, 16), repeats=1, with_torch=False, checkpoint=seen.append)
    groups = 2 * 2 * len(bench.MODELS)  # m x dtype x model
    assert [len(r["rows"]) for r in seen] == list(range(1, groups + 1))
    assert all(r["complete"] is False for r in seen) and final["complete"] is True
    assert seen[-1]["rows"] == final["rows"]
    json.dumps(seen[0])
    # a checkpoint is a snapshot: later groups do not change what an earlier one held
    assert len(seen[0]["limits"]) == 1 and set(seen[0]["limits"]) <= set(final["limits"])


def test_torch_rows_and_ceilings(no_idle_wait):
    pytest.importorskip("torch", reason="PyTorch is not installed (the comparison is optional)")
    result = bench.run(["numpy"], ms=(16,), x_dtypes=("float32",), repeats=1, with_torch=True)
    for row in result["rows"]:
        assert row["ratios"]["speedup_vs_torch_cpu"] > 0
    limits = result["limits"]["m=16,float32"]
    assert limits["torch_cpu_logreg_epoch_over_read"] > 0
    assert limits["torch_cpu_products_over_blas_products"] > 0
    assert result["torch"]["cpu_torch"] and result["torch"]["cpu_torch_threads"] >= 1


def test_cli_refuses_when_no_requested_backend_can_run(capsys):
    if backends.available()["cupy"].available:
        pytest.skip("cupy runs here, so a cupy-only benchmark is valid")
    code = cli.main(["bench", "--backends", "cupy", "--m", "8", "--no-torch"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the requested backends can run here: cupy" in err[0]


def test_cli_refuses_plot_without_matplotlib_before_timing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("timed before checking --plot"))
    out = tmp_path / "bench.png"
    code = cli.main(["bench", "--backends", "numpy", "--m", "8", "--no-torch", "--plot", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plot: plots need matplotlib: pip install 'nnx-nets[plot]'" in err[0]
