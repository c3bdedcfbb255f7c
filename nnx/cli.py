"""The ``nnx`` command line. Bad arguments exit with code 2 and a one-line message."""

from __future__ import annotations

import argparse
import json
import sys

from .data import DataError
from .errors import BackendUnavailableError, DeviceMemoryError, ModelFormatError, TrainingDivergedError
from .runner import UsageError

BACKEND_CHOICES = ("auto", "numpy", "numba", "cupy")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as argparse does, no usage dump
        self.exit(2, f"nnx: error: {message}\n")


def _fail(message: str) -> int:
    print(f"nnx: error: {message}", file=sys.stderr)
    return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(backend=args.backend, dtype=args.dtype, quick=args.quick)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .runner import TrainConfig, train

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
    )
    result = train(cfg, resume=args.resume, verbose=not args.quiet)
    h = result.history
    last = f"loss {h.loss[-1]:.4f}, accuracy {h.accuracy[-1]:.1%}" if h.loss else "no epochs recorded"
    if h.val_accuracy:
        last += f", validation accuracy {h.val_accuracy[-1]:.1%}"
    if result.interrupted:
        print(
            f"nnx: interrupted after epoch {result.epochs_done} of {cfg.epochs}; checkpoint saved in "
            f"{cfg.out}; continue with the same command plus --resume",
            file=sys.stderr,
        )
        return 130
    print(f"trained {cfg.model} for {result.epochs_done} epochs on backend {h.backend}: {last}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .runner import describe_results, predict_files

    results = predict_files(args.model, args.images, threshold=args.threshold, backend=args.backend)
    print(json.dumps(results, indent=2) if args.json else describe_results(results))
    return 1 if any("error" in r for r in results) else 0


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


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .io import atomic_write

    known = ("numpy", "numba", "cupy")
    for name in args.backends:
        if name not in known:
            return _fail(f"unknown backend {name!r} in --backends; expected some of {', '.join(known)}")
    for model in args.models:
        if model not in bench.MODELS:
            return _fail(f"unknown model {model!r} in --models; expected some of {', '.join(bench.MODELS)}")
    for dt in args.dtype:
        if dt not in bench.X_DTYPES:
            return _fail(f"unknown dtype {dt!r} in --dtype; expected some of {', '.join(bench.X_DTYPES)}")
    if any(m < 1 for m in args.m) or args.repeats < 1:
        return _fail("--m values and --repeats must be positive")
    if args.plot:
        from .plot import pyplot

        try:  # before minutes of timing, not after
            pyplot()
        except ImportError as exc:
            return _fail(f"--plot: {exc}")

    def write_json(record: dict) -> None:
        atomic_write(args.json, lambda fh: fh.write(json.dumps(record, indent=2).encode()))

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
        print(f"wrote {args.json}")
    if args.plot:
        bench.plot_throughput(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnx", description="nnx: neural networks on NumPy, Numba and CuPy backends")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="train on the built-in synthetic images and toy sets")
    demo.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=None, help="backend (default: NNX_BACKEND or auto)"
    )
    demo.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    demo.add_argument("--quick", action="store_true", help="10x fewer epochs (smoke run)")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train on images, npz, csv or h5 (default: built-in data)")
    train.add_argument("--data", help="image folder or zip, .npz, .csv or .h5 (default: embedded synthetic)")
    train.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    train.add_argument("--hidden", type=int, default=50, help="hidden units of the mlp")
    train.add_argument("--epochs", type=int, default=2000)
    train.add_argument("--lr", type=float, default=0.005)
    train.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    train.add_argument("--backend", choices=BACKEND_CHOICES, default=None)
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--size", type=int, default=64, help="images are resized to size x size")
    train.add_argument("--positive", help="class name labelled 1 (default: the second in sorted order)")
    train.add_argument("--val-split", type=float, default=0.2)
    train.add_argument("--cache", help="npz cache of decoded images, reused while the source is unchanged")
    train.add_argument("--out", default="nnx-run", help="output folder")
    train.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint every k epochs")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="probability and label for image files")
    predict.add_argument("model", help="a model.npz written by nnx train or Sequential.save")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--threshold", type=float, default=0.5)
    predict.add_argument("--backend", choices=BACKEND_CHOICES, default=None)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=cmd_predict)

    bench = sub.add_parser("bench", help="epoch throughput of each backend on 12288 x m batches")
    bench.add_argument("--backends", type=_csv(str), default=["numpy", "numba", "cupy"])
    bench.add_argument("--models", type=_csv(str), default=["logreg", "mlp"])
    bench.add_argument("--m", type=_csv(int), default=[256, 2048, 16384])
    bench.add_argument(
        "--dtype", type=_csv(str), default=["float32", "uint8"], help="input dtypes: float32, float64, uint8"
    )
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    bench.add_argument("--json", help="write every figure, the device and versions to this file")
    bench.add_argument("--plot", help="write a throughput-vs-m PNG to this file")
    bench.set_defaults(func=cmd_bench)

    info = sub.add_parser("info", help="versions, backends and why others are unavailable")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("nnx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
