"""`python -m bench [NAME ...] [--tiny]`: run the CPU benchmarks (all when no name is given)."""

from __future__ import annotations

import argparse

from bench import BENCHMARKS, run_benchmarks


def main(argv: list[str] | None = None) -> None:
    """Parse the benchmark names and scale, then run them."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes: checks that every benchmark runs, in about a minute")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    run_benchmarks(args.names or None, "tiny" if args.tiny else "full")


if __name__ == "__main__":
    main()
