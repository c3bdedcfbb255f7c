"""Run a test's body without root's power to ignore file permissions.

Tests here often run as root, and root reads files whatever their mode, so "permission
denied" cannot happen. ``run_unprivileged(fn)`` runs ``fn`` directly for a normal user and,
for root, in a forked child that has dropped to user "nobody" (65534), returning fn's
JSON-able result; the test is skipped, saying why, where that cannot be done.
``reachable_tmp(tmp_path)`` gives a folder that user to be able to enter.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

NOBODY = 65534


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_unprivileged(fn):
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX file permissions are needed")
    if not is_root():
        return fn()
    if not hasattr(os, "fork"):
        pytest.skip("running as root without os.fork: cannot drop root to test permissions")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report, exit without pytest's clean-up
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as exc:
                out = {"skip": f"running as root and cannot drop to user nobody ({exc})"}
            else:
                try:
                    out = {"ok": fn()}
                except BaseException as exc:  # reported to the parent
                    out = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write_end, "w") as fh:
                json.dump(out, fh)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    out = json.loads(text) if text else {"error": "the child died without a report"}
    if "skip" in out:
        pytest.skip(out["skip"])
    if "error" in out:
        pytest.fail(f"in the unprivileged child: {out['error']}")
    return out["ok"]


@contextlib.contextmanager
def reachable_tmp(tmp_path: Path):
    """tmp_path for a normal user; for root a fresh folder that user nobody can enter
    (pytest's own temporary folders are private to root), removed afterwards."""
    if not is_root():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="nnx-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for p in folder.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(folder)
