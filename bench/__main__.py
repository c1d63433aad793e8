"""`python -m bench [NAME ...] [--tiny] [--augment official]`: run CPU benchmarks (default all)."""

from __future__ import annotations

import argparse
import os

from bench import BENCHMARKS, run_benchmarks


def main(argv: list[str] | None = None) -> None:
    """Parse the benchmark names and scale, then run them."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes: checks that every benchmark runs, in about a minute")
    parser.add_argument("--augment", choices=("none", "official"), default="none",
                        help="loader: train.augment of both loaders (official: random crops)")
    parser.add_argument("--int8", choices=("auto", "on", "off"),
                        help="force the kernel path (sets DQU_INT8; default: the measured probe)")
    args = parser.parse_args(argv)
    if args.int8:
        os.environ["DQU_INT8"] = args.int8
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    run_benchmarks(args.names or None, "tiny" if args.tiny else "full", args.augment)


if __name__ == "__main__":
    main()
