"""The ``nnx`` command line.

Nothing a user can cause shows a traceback: bad arguments, bad data, unsafe output paths
and full disks exit with code 2 and one line; per-file prediction errors exit 1; a stop
by SIGINT/SIGTERM/SIGHUP exits 128 + the signal number after checkpointing; an
unexpected internal error prints one line saying it is a bug (exit 70; ``--debug`` or
``NNX_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import errno
import io
import json
import os
import re
import sys
import textwrap
from typing import Any, NoReturn

import numpy as np

from .. import backends, registry
from ..data.csv_file import CSV_LAYOUTS
from ..errors import (
    BackendUnavailableError,
    DataError,
    DeviceMemoryError,
    ModelFormatError,
    TrainingDivergedError,
    UsageError,
)
from ..files import printable

BACKEND_CHOICES = registry.backend_choices()
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE


class _Parser(argparse.ArgumentParser):
    """argparse with no abbreviated options (``--epoch`` is not ``--epochs``) and errors in
    nnx's form: the usage line, then one line saying what is wrong, with the closest
    option when an unknown one looks like a typo; exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # the subcommand's parser knows its own options: name it and suggest from them
            parser = self._subcommand(getattr(parsed, "command", None)) or self
            parser.report(unknown_arguments(extras, parser))
        return parsed

    def add_subparsers(self, **kwargs: Any) -> Any:
        self.subcommands = super().add_subparsers(**kwargs)
        return self.subcommands

    def _subcommand(self, name: str | None) -> argparse.ArgumentParser | None:
        subcommands = getattr(self, "subcommands", None)
        return None if subcommands is None else subcommands.choices.get(name)

    def long_options(self) -> list[str]:
        """Every ``--option`` this parser takes."""
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):  # an unknown option before the subcommand
            self.report(unknown_arguments(message.split(": ", 1)[1].split(), self))
        choice = re.match(r"argument command: invalid choice: '(.*?)' \(choose from (.*)\)", message)
        if choice:
            names = re.findall(r"'([^']*)'", choice[2])
            close = difflib.get_close_matches(choice[1], names, n=1)
            hint = f"did you mean {close[0]}?" if close else f"expected one of {', '.join(names)}"
            message = f"{choice[1]!r} is not an nnx command; {hint}"
        self.report(message, usage=False)

    def report(self, message: str, usage: bool = True) -> NoReturn:
        """One line of error on stderr (after the usage line, for an unknown option), exit 2."""
        if not usage:
            self.exit(2, f"nnx: error: {message}\n")
        line = self.format_usage().strip()
        if "\n" in line:  # a long usage: the command, its arguments and where the options are
            positionals = [a.metavar or a.dest for a in self._actions if not a.option_strings]
            shown = " ".join(
                p.upper() + ("..." if p == "PATH" else "") for p in positionals if p != "command"
            )
            line = f"usage: {self.prog} [options] {shown}".rstrip() + f"  (options: {self.prog} --help)"
        self.exit(2, f"{line}\nnnx: error: {message}\n")


def unknown_arguments(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """ "unrecognized arguments: --epcohs 10; did you mean --epochs?": the options nnx does
    not take, each unknown flag with the closest of ``parser``'s (difflib)."""
    known = parser.long_options() if isinstance(parser, _Parser) else []
    hints = []
    for extra in extras:
        if extra.startswith("--"):
            flag = extra.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
            if close:
                hints.append((flag, close[0]))
    text = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        return f"{text}; did you mean {hints[0][1]}?"
    if hints:
        return f"{text}; did you mean " + ", ".join(f"{b} (for {a})" for a, b in hints) + "?"
    return f"{text}; see {parser.prog} --help"


class _HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default: in words where the help says
    "(default: ...)" itself, else the value (a list comma-separated, a flag "off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default:" in text:
            return text
        value = action.default
        if action.nargs == 0:
            shown = "on" if value else "off"
        elif isinstance(value, (list, tuple)):
            shown = ",".join(str(v) for v in value)
        else:
            shown = str(value)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def _fail(message: str) -> int:
    # an OSError's "[Errno N] " prefix says nothing to a user: the words after it do
    message = re.sub(r"\[Errno -?\d+\] ?", "", message)
    print(f"nnx: error: {printable(message)}", file=sys.stderr)
    return EXIT_USAGE


# what to do about the operating system's commonest refusals, by errno
_OS_ADVICE = {
    errno.ENOENT: "no such file or folder; check the path",
    errno.EEXIST: "something already exists there; remove it or choose another path",
    errno.EISDIR: "that is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EACCES: "permission denied; check the permissions or choose another path",
    errno.EPERM: "not permitted; check the permissions or choose another path",
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def os_error_text(exc: OSError) -> str:
    """An OSError in words: what happened and what to do, naming the file, no "[Errno N]"."""
    words = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    if exc.filename is not None:
        return f"{exc.filename}: {words or exc.strerror or exc}"
    if exc.strerror:  # nnx's own message as is; the system's bare one replaced by advice
        plain = exc.errno is not None and exc.strerror == os.strerror(exc.errno)
        return (words or exc.strerror) if plain else exc.strerror
    return str(exc)


def _check_env_backend() -> None:
    """NNX_BACKEND, when set, must name a backend (checked before any work)."""
    value = os.environ.get("NNX_BACKEND")
    if value and value.strip().lower() not in BACKEND_CHOICES:
        raise UsageError(
            f"NNX_BACKEND={value!r} is not a backend; expected one of {', '.join(BACKEND_CHOICES)} "
            "(or unset it)"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(backend=args.backend, dtype=args.dtype, quick=args.quick)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..errors import StoppedBySignal
    from .run_config import TrainConfig
    from .train_job import train

    cfg = TrainConfig(
        data=args.data,
        model=args.model,
        hidden=args.hidden,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        dtype=args.dtype,
        size=args.size,
        positive=args.positive,
        val_split=args.val_split,
        backend=args.backend,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        cache=args.cache,
        optimizer=args.optimizer,
        momentum=args.momentum,
        nesterov=args.nesterov,
        l2=args.l2,
        dropout=args.dropout,
        schedule=args.schedule,
        early_stopping=args.early_stopping,
        class_weight=args.class_weight,
        layout=args.layout,
    )
    if args.resume and args.overwrite:
        return _fail("--resume continues the run in --out and --overwrite discards it: give one of them")
    try:
        result = train(cfg, resume=args.resume, verbose=not args.quiet, overwrite=args.overwrite)
    except StoppedBySignal as exc:
        print(f"nnx: stopped by {_signal_name(exc.signum)} before training; nothing written", file=sys.stderr)
        return 128 + exc.signum
    h = result.history
    lbfgs = cfg.solver == "lbfgs"
    unit = "iteration" if lbfgs else "epoch"
    last = f"loss {h.loss[-1]:.4f}, accuracy {h.accuracy[-1]:.1%}" if h.loss else f"no {unit}s recorded"
    if h.val_accuracy:
        last += f", validation accuracy {h.val_accuracy[-1]:.1%}"
    if result.interrupted and not result.stopped_training:
        print(
            f"nnx: {_signal_name(result.signal)} arrived while the outputs were written; they were "
            f"finished first: {printable(str(cfg.out))} holds the complete run",
            file=sys.stderr,
        )
        return 128 + int(result.signal or 2)
    if result.interrupted:
        follow = (
            "the model there is that iteration's (an L-BFGS run cannot be resumed: it keeps no state "
            "between fits); train again with --overwrite"
            if lbfgs
            else "continue with the same command plus --resume"
        )
        print(
            f"nnx: interrupted by {_signal_name(result.signal)} after {unit} {result.epochs_done} of "
            f"{cfg.epochs}; checkpoint saved in {printable(str(cfg.out))}; {follow}",
            file=sys.stderr,
        )
        return 128 + int(result.signal or 2)
    how = f" with L-BFGS ({printable(h.stop_reason)})" if lbfgs else ""
    print(
        f"trained {cfg.model}{how} for {result.epochs_done} {unit}s on backend {printable(h.backend)}: {last}"
    )
    if result.stop_reason:
        print(f"stopped at epoch {result.epochs_done} of {cfg.epochs}: {printable(result.stop_reason)}")
    return 0


def _signal_name(signum: int | None) -> str:
    import signal

    try:
        return signal.Signals(signum).name if signum is not None else "a signal"
    except ValueError:
        return f"signal {signum}"


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import StdoutWriteError
    from ..files import atomic_write, check_target
    from .predict_job import Predictions, csv_columns, csv_row, describe_results
    from .train_job import describe_skipped

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:  # NaN fails both
        return _fail(f"--threshold must lie in [0, 1], got {args.threshold}")
    if args.top is not None and not 1 <= args.top <= 1000:
        return _fail(f"--top must lie in [1, 1000], got {args.top}")
    if args.csv:  # before any picture is read, not after
        check_target(args.csv, "predictions-csv", label="--csv")
    # on stderr, where it is a terminal (never with --quiet), once the pictures take a moment
    quiet = args.quiet or not sys.stderr.isatty()
    bar = tqdm(total=0, unit="img", desc="predicting", leave=False, file=sys.stderr, delay=1.0, disable=quiet)
    try:
        run = Predictions(
            args.model,
            args.images,
            threshold=args.threshold,
            backend=args.backend,
            top=args.top,
            progress=bar,
        )

        def emit(binary: Any = None) -> None:
            """Print each batch's lines (or JSON) as it comes, and write its CSV rows."""

            def write_rows(rows: Any) -> None:
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(rows)
                binary.write(text.getvalue().encode("utf-8", "surrogateescape"))

            if binary is not None:
                write_rows([csv_columns(run.ranked)])
            first = True
            for batch in run.batches():
                if args.json:
                    chunk = ",\n".join(textwrap.indent(json.dumps(e, indent=2), "  ") for e in batch)
                    out = ("[\n" if first else ",\n") + chunk
                else:
                    out = describe_results(batch) + "\n"
                first = False
                try:
                    with tqdm.external_write_mode(file=sys.stdout):  # the bar steps aside
                        sys.stdout.write(out)
                        sys.stdout.flush()
                except OSError as exc:  # stdout's failure (a closed pipe), not the CSV's
                    raise StdoutWriteError(exc) from exc
                if binary is not None:
                    write_rows(csv_row(e, run.ranked) for e in batch)
            if args.json:
                sys.stdout.write("[]\n" if first else "\n]\n")

        if args.csv:
            atomic_write(args.csv, emit, "predictions-csv")
        else:
            emit()
    except StdoutWriteError as exc:
        raise exc.args[0] from None
    finally:
        bar.close()
    if run.skipped:
        print(f"nnx: {describe_skipped(run.skipped)}", file=sys.stderr)
    if args.csv and not args.json:
        print(f"wrote {printable(args.csv)}", file=sys.stderr)
    return 1 if run.n_errors else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..files import check_target
    from .evaluate_job import describe_evaluation, evaluate_files, plot_confusion

    if args.plot:
        from .plot import pyplot

        check_target(args.plot, "plot", label="--plot")
        try:  # before the data are read, not after
            pyplot()
        except ImportError as exc:
            return _fail(f"--plot: {exc}")
    result = evaluate_files(args.model, args.data, layout=args.layout, backend=args.backend)
    print(json.dumps(result, indent=2) if args.json else describe_evaluation(result))
    if args.plot:
        plot_confusion(result, args.plot)
        if not args.json:
            print(f"wrote {printable(args.plot)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export_job import export_model

    print(export_model(args.model, args.out, dtype=args.dtype, input_dtype=args.input_dtype))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import collect, format_info

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _csv(kind):
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad list {text!r}: {exc}") from exc

    return parse


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation here (Linux), else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    from ..files import BENCH_FORMAT, atomic_write, check_target
    from . import bench
    from .bench_workloads import MODELS, N_X, X_DTYPES

    known = backends.names()
    for name in args.backends:
        if name not in known:
            return _fail(f"unknown backend {name!r} in --backends; expected some of {', '.join(known)}")
    for model in args.models:
        if model not in MODELS:
            return _fail(f"unknown model {model!r} in --models; expected some of {', '.join(MODELS)}")
    for dt in args.dtype:
        if dt not in X_DTYPES:
            return _fail(f"unknown dtype {dt!r} in --dtype; expected some of {', '.join(X_DTYPES)}")
    if not args.backends or not args.models or not args.m or not args.dtype:
        return _fail("--backends, --models, --m and --dtype each need at least one value")
    if any(not 1 <= m <= 10**8 for m in args.m) or not 1 <= args.repeats <= 1000:
        return _fail("--m values must lie in [1, 100000000] and --repeats in [1, 1000]")
    # The largest batch holds X in each input dtype plus a float copy per backend.
    biggest = max(args.m) * N_X * (sum(np.dtype(d).itemsize for d in args.dtype) + 8)
    available = _available_memory()
    if available is not None and biggest > 0.8 * available:
        return _fail(
            f"--m {max(args.m)} needs about {biggest / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB "
            "is available here; use a smaller --m"
        )
    if args.json and args.plot:
        from .outputs import same_path

        if same_path(args.json, args.plot):
            return _fail(f"--json and --plot name the same file {args.json}; give each its own path")
    for option, path, kind in (("--json", args.json, "bench"), ("--plot", args.plot, "plot")):
        if path:  # before minutes of timing, not after
            check_target(path, kind, label=option)
    if args.plot:
        from .plot import pyplot

        try:  # before minutes of timing, not after
            pyplot()
        except ImportError as exc:
            return _fail(f"--plot: {exc}")

    def write_json(record: dict) -> None:
        text = json.dumps({"format": BENCH_FORMAT, **record}, indent=2)
        atomic_write(args.json, lambda fh: fh.write(text.encode()), kind="bench")

    result = bench.run(
        args.backends,
        args.models,
        args.m,
        args.dtype,
        repeats=args.repeats,
        with_torch=not args.no_torch,
        progress=lambda msg: print(f"running {msg} ...", file=sys.stderr, flush=True),
        checkpoint=write_json if args.json else None,  # a run cut short keeps its finished rows
    )
    print(bench.format_table(result))
    if args.json:
        write_json(result)
        print(f"wrote {printable(args.json)}")
    if args.plot:
        from .plot import throughput

        throughput(result, args.plot)
        print(f"wrote {printable(args.plot)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``nnx`` argument parser: every subcommand and its options."""
    from .run_config import DEFAULT_LR

    debug_help = "show the traceback of an internal error (also NNX_DEBUG=1)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help=debug_help)
    # the subcommands' copy sets --debug only when given there: its default would otherwise
    # overwrite an `nnx --debug train ...` given before the subcommand
    sub_common = argparse.ArgumentParser(add_help=False)
    sub_common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=f"{debug_help} (default: off)"
    )
    parser = _Parser(
        prog="nnx",
        description="nnx: neural networks on NumPy, Numba and CuPy backends",
        parents=[common],
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[sub_common], formatter_class=_HelpFormatter, **kwargs)

    backend_help = "backend (default: NNX_BACKEND, else auto)"

    demo = command("demo", help="train on the built-in synthetic images and toy sets")
    demo.add_argument("--backend", choices=BACKEND_CHOICES, default=None, help=backend_help)
    demo.add_argument("--dtype", choices=registry.COMPUTE_DTYPES, default="float32", help="compute precision")
    demo.add_argument("--quick", action="store_true", help="10x fewer epochs (smoke run)")
    demo.set_defaults(func=cmd_demo)

    train = command("train", help="train on images, npz, csv or h5 (default: built-in data)")
    train.add_argument(
        "--data",
        metavar="PATH",
        help="image folder or zip, .npz, .csv or .h5 (default: the embedded synthetic set)",
    )
    train.add_argument(
        "--model",
        choices=("logreg", "mlp"),
        default="logreg",
        help="two classes: sigmoid output; more: softmax",
    )
    train.add_argument("--hidden", type=int, metavar="N", default=50, help="hidden units of the mlp")
    train.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        default=2000,
        help="passes over the training data (--optimizer lbfgs: iterations at most)",
    )
    train.add_argument(
        "--lr",
        type=float,
        metavar="A",
        default=None,
        help=f"learning rate of a step --optimizer; lbfgs takes none (default: {DEFAULT_LR})",
    )
    train.add_argument(
        "--optimizer",
        choices=tuple(registry.OPTIMIZERS),
        default=registry.DEFAULT_OPTIMIZER,
        help=f"{', '.join(registry.STEP_OPTIMIZERS)} as torch.optim (sgd at --momentum 0 is plain "
        "gradient descent); lbfgs: L-BFGS on the full batch, to the optimum (no --lr, --schedule, "
        "--batch-size, --early-stopping, --dropout or --resume)",
    )
    momentum_takers = [n for n in registry.STEP_OPTIMIZERS if "momentum" in registry.OPTIMIZERS[n].hyper]
    train.add_argument(
        "--momentum",
        type=float,
        metavar="BETA",
        default=0.0,
        help=f"momentum of --optimizer {' or '.join(momentum_takers)}, in [0, 1) (0: none)",
    )
    train.add_argument(
        "--nesterov", action="store_true", help="Nesterov momentum (--optimizer sgd with --momentum)"
    )
    train.add_argument(
        "--l2", type=float, metavar="LAMBDA", default=0.0, help="L2 penalty l2/(2m)*sum(W^2) (weights only)"
    )
    train.add_argument(
        "--dropout", type=float, metavar="P", default=0.0, help="dropout rate after the mlp's hidden layer"
    )
    train.add_argument(
        "--schedule",
        metavar="SPEC",
        default=None,
        help=f"learning-rate schedule: {registry.SCHEDULE_FORMS} (default: none)",
    )
    train.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs, best parameters kept "
        "(default: off)",
    )
    train.add_argument(
        "--class-weight",
        metavar="SPEC",
        default=None,
        help="none, balanced, or CLASS:WEIGHT pairs, each class a number or name: 0:1,1:3 or cat:2 "
        "(default: none)",
    )
    train.add_argument(
        "--batch-size", type=int, metavar="B", default=None, help="mini-batch size (default: full batch)"
    )
    train.add_argument("--backend", choices=BACKEND_CHOICES, default=None, help=backend_help)
    train.add_argument(
        "--dtype", choices=registry.COMPUTE_DTYPES, default="float32", help="compute precision"
    )
    train.add_argument(
        "--seed", type=int, metavar="S", default=1, help="initial parameters, split and shuffle"
    )
    train.add_argument("--size", type=int, metavar="PX", default=64, help="images are resized to size x size")
    train.add_argument(
        "--positive",
        metavar="CLASS",
        help="two classes: the one labelled 1 (default: the second in sorted order)",
    )
    train.add_argument(
        "--val-split", type=float, metavar="F", default=0.2, help="share held out for validation"
    )
    train.add_argument(
        "--cache",
        metavar="FILE",
        help="npz of decoded images, reused while the source is unchanged (default: none)",
    )
    train.add_argument("--out", metavar="DIR", default="nnx-run", help="output folder")
    train.add_argument(
        "--checkpoint-every", type=int, metavar="K", default=100, help="checkpoint every k epochs"
    )
    train.add_argument(
        "--layout",
        choices=CSV_LAYOUTS,
        default="auto",
        help="a CSV's layout: rows (one example per row, labels last, optional header), columns "
        "(one example per column, labels in the last row), auto (the one it fits; asks if both)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.npz, also to a larger --epochs after the run ended",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="start afresh over a previous run's files in --out"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    predict = command("predict", help="probability and label for pictures, folders and zips of them")
    predict.add_argument("model", help="a model.npz written by nnx train or Sequential.save")
    predict.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="pictures, folders (read recursively) and zips of pictures to classify, listed as nnx train "
        "lists them",
    )
    predict.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        default=None,
        help="two-class models: label 1 where its probability is above P (default: 0.5)",
    )
    predict.add_argument(
        "--top",
        type=int,
        metavar="N",
        default=None,
        help="models of 3 or more classes: show the N most probable classes (default: 1)",
    )
    predict.add_argument("--backend", choices=BACKEND_CHOICES, default=None, help=backend_help)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.add_argument(
        "--csv",
        metavar="FILE",
        help="also write path,label,class,probability (and the runners-up of --top) per picture to "
        "this file (default: none)",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=cmd_predict)

    evaluate = command(
        "evaluate", help="loss, accuracy, per-class scores and confusion matrix on labelled data"
    )
    evaluate.add_argument("model", help="a model.npz written by nnx train or Sequential.save")
    evaluate.add_argument(
        "data", help="labelled data: a folder or zip of pictures by class, or an npz, .csv or .h5 file"
    )
    evaluate.add_argument(
        "--layout", choices=CSV_LAYOUTS, default="auto", help="a CSV's layout, as for nnx train"
    )
    evaluate.add_argument("--backend", choices=BACKEND_CHOICES, default=None, help=backend_help)
    evaluate.add_argument(
        "--plot", metavar="FILE", help="draw the confusion matrix to this PNG (default: none)"
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    export = command("export", help="write a model as ONNX (the onnx extra)")
    export.add_argument("model", help="a model.npz written by nnx train or Sequential.save")
    export.add_argument("out", help="the .onnx file to write")
    export.add_argument(
        "--dtype",
        choices=registry.COMPUTE_DTYPES,
        default=None,
        help="compute precision (default: the model's)",
    )
    export.add_argument(
        "--input-dtype",
        choices=registry.INPUT_DTYPES,
        default=None,
        help="what X holds: uint8 raw pixels (1/255 inside the graph) or features (default: uint8 for a "
        "model trained on images, else --dtype)",
    )
    export.set_defaults(func=cmd_export)

    bench = command("bench", help="epoch throughput of each backend on 12288 x m batches")
    bench.add_argument(
        "--backends", type=_csv(str), metavar="LIST", default=list(backends.names()), help="comma-separated"
    )
    bench.add_argument(
        "--models",
        type=_csv(str),
        metavar="LIST",
        default=["logreg", "softmax", "mlp", "mlp-adam"],
        help="comma-separated: logreg, softmax (10 classes), mlp, mlp-adam (the mlp with Adam)",
    )
    bench.add_argument(
        "--m", type=_csv(int), metavar="LIST", default=[256, 2048, 16384], help="batch sizes, comma-separated"
    )
    bench.add_argument(
        "--dtype",
        type=_csv(str),
        metavar="LIST",
        default=["float32", "uint8"],
        help="input dtypes: float32, float64, uint8",
    )
    bench.add_argument(
        "--repeats", type=int, metavar="N", default=5, help="timed rounds (the median is reported)"
    )
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    bench.add_argument(
        "--json",
        metavar="FILE",
        help="write every figure, the device and versions to this file (default: none)",
    )
    bench.add_argument(
        "--plot", metavar="FILE", help="write a throughput-vs-m PNG to this file (default: none)"
    )
    bench.set_defaults(func=cmd_bench)

    info = command("info", help="versions, backends and why others are unavailable")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("NNX_DEBUG", "") not in ("", "0")
    try:
        _check_env_backend()
        if sys.stdout is None:  # started with stdout closed (>&-): Python has no sys.stdout
            return _fail("standard output is closed; redirect it instead (>/dev/null, or > FILE to keep it)")
        return args.func(args)
    except (
        BackendUnavailableError,
        UsageError,
        DataError,
        ModelFormatError,
        TrainingDivergedError,
        DeviceMemoryError,
    ) as exc:
        return _fail(str(exc))
    except OSError as exc:  # missing files, full disks, permissions: nnx's messages name the file
        return _fail(os_error_text(exc))
    except MemoryError as exc:
        return _fail(f"out of memory ({exc or 'allocation failed'}); use less data or a smaller model")
    except KeyboardInterrupt:
        print("nnx: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line; the traceback on request
        if debug:
            raise
        print(
            f"nnx: internal error (a bug in nnx, please report it): {type(exc).__name__}: "
            f"{printable(str(exc))}; rerun with --debug or NNX_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
