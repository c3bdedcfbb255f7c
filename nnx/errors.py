"""Exceptions raised by nnx, each naming what went wrong and what to do."""

from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """A backend was requested that cannot run here (missing package, no GPU, broken driver)."""


class ModelFormatError(ValueError):
    """A saved model file is truncated, foreign, corrupt or written by a newer nnx."""


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the model's parameters were left unchanged."""


class DeviceMemoryError(MemoryError):
    """The GPU has too little free memory for the work; the message says how much and what to do."""


class DataError(ValueError):
    """Data that cannot be used: empty, unreadable, wrong layout or corrupt values."""


class UsageError(ValueError):
    """A bad argument or input for a command-line job (reported as one line, exit code 2)."""


class UnsafeOutputError(FileExistsError):
    """An output path holds something nnx did not write (or a folder); nnx never writes over it."""


class OutputWriteError(OSError):
    """Writing an output file failed (full disk, no permission, ...); the message names the file."""


class UnusableFileError(Exception):
    """An image file or zip member that ``nnx.data.load_images`` skips before (or instead
    of) decoding it; the message says why. It never reaches the caller: each one becomes
    an entry of the load's ``skipped`` list."""


class WorkerLostError(RuntimeError):
    """Dask could not finish the training work (workers died too often, or the work was
    cancelled); the model's parameters were left as they were."""


class MinimisationStopped(Exception):
    """Internal: raised from an L-BFGS iteration callback to end the minimisation there
    (``nnx.lbfgs`` catches it; it never reaches a caller)."""


class StdoutWriteError(Exception):
    """Internal: writing ``nnx predict``'s results to stdout failed (a closed pipe...) while
    the --csv file was being written around it; ``args[0]`` is the OSError, which the
    command line reports as itself, not as a failure to write the CSV."""


class StoppedBySignal(Exception):
    """``nnx.runner.train``: a stop signal (SIGINT, SIGTERM, SIGHUP) arrived before training
    began, while the data were loading; nothing was trained or written. ``signum`` is the
    signal."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum} before training; nothing written")
        self.signum = signum


class CudaForkedError(BackendUnavailableError):
    """The CuPy backend was used in a process forked after its parent had initialised CUDA:
    CUDA cannot run there (start worker processes with the 'spawn' start method)."""
