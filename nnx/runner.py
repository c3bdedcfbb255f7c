"""The jobs behind ``nnx train`` and ``nnx predict``, kept at this import path: the run
configuration (``nnx.app.run_config``), output safety and the --out lock (``outputs``),
the data (``train_data``), signals (``signals``), the checkpoint (``checkpoint``), the
train job (``train_job``) and the predict job (``predict_job``), all in ``nnx.app``."""

from __future__ import annotations

from .app.checkpoint import (  # noqa: F401
    resume_from,
    write_checkpoint,
)
from .app.outputs import (  # noqa: F401
    CHECKPOINT,
    OUTPUTS,
    check_output_paths,
    lock_out,
    same_path,
    write_outputs,
)
from .app.predict_job import (  # noqa: F401
    PREDICT_BATCH_BYTES,
    describe_results,
    predict_files,
)
from .app.run_config import (  # noqa: F401
    LIMITS,
    TRAINING_DEFAULTS,
    TrainConfig,
    build_class_weight,
    build_model,
    build_optimizer,
    build_schedule,
    check_builtin_options,
    check_config,
    check_model_size,
    resolve_class_weight,
)
from .app.signals import (  # noqa: F401
    STOP_SIGNALS,
    stop_signals_handled,
)
from .app.train_data import (  # noqa: F401
    Dataset,
    check_splits,
    data_fingerprint,
    load_data,
)
from .app.train_job import (  # noqa: F401
    TrainResult,
    train,
)
from .errors import (  # noqa: F401
    StoppedBySignal,
)
from .io import (  # noqa: F401
    write_model_file,
)

__all__ = [
    "CHECKPOINT",
    "Dataset",
    "LIMITS",
    "OUTPUTS",
    "PREDICT_BATCH_BYTES",
    "STOP_SIGNALS",
    "StoppedBySignal",
    "TRAINING_DEFAULTS",
    "TrainConfig",
    "TrainResult",
    "build_class_weight",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "check_builtin_options",
    "check_config",
    "check_model_size",
    "check_output_paths",
    "check_splits",
    "data_fingerprint",
    "describe_results",
    "load_data",
    "lock_out",
    "predict_files",
    "resolve_class_weight",
    "resume_from",
    "same_path",
    "stop_signals_handled",
    "train",
    "write_checkpoint",
    "write_model_file",
    "write_outputs",
]
