"""The ``nnx`` command line. Bad arguments exit with code 2 and a one-line message."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import BackendUnavailableError

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


def cmd_info(args: argparse.Namespace) -> int:
    from .info import collect, format_info

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
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

    info = sub.add_parser("info", help="versions, backends and why others are unavailable")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BackendUnavailableError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("nnx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
