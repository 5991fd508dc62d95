"""The ``pyjoule`` command (``python -m pyjoule``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyjoule", description="Inspect pyjoule runs.")
    parser.add_argument("--cache", help="cache directory (default: as the library finds it)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("runs", help="table of runs in the cache's registry")
    args = parser.parse_args(argv)
    if args.command == "runs":
        import pandas as pd

        from ._api import runs

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(runs(args.cache).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
