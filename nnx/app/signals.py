"""Signals that stop ``nnx train`` the way Ctrl-C does: finish the epoch, checkpoint, exit
128 + the signal."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import StoppedBySignal

# Signals that stop a run the way Ctrl-C does: finish the epoch, checkpoint, exit 128 + signal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def stop_signals_handled(stop: dict[str, Any]) -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP stop the run cleanly, per ``stop``:
    ``stop["signal"]`` records the first one; in the "loading" phase it raises
    ``StoppedBySignal`` at once (nothing written); in the "training" phase the run ends
    after the epoch (repeats of SIGTERM/SIGHUP are ignored, a second SIGINT raises
    KeyboardInterrupt as Ctrl-C twice does); in the "writing" phase it waits. Handlers are
    set only from the main thread (elsewhere the caller owns signals) and restored after."""

    def on_stop_signal(signum: int, frame: Any) -> None:
        phase, first = stop["phase"], stop["signal"]
        if first is None:
            stop["signal"] = signum
            if phase == "loading":
                stop["phase"] = "stopping"
                raise StoppedBySignal(signum)
        elif phase == "training" and signum == first == getattr(signal, "SIGINT", None):
            raise KeyboardInterrupt  # Ctrl-C twice: abort without waiting for the epoch

    handle = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_stop_signal) for s in STOP_SIGNALS} if handle else {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
