"""The ``pyjoule`` command (``python -m pyjoule``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyjoule", description="Inspect pyjoule runs and hosts.")
    parser.add_argument("--cache", help="cache directory (default: as the library finds it)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("runs", help="table of runs in the cache's registry")
    hosts = sub.add_parser("hosts", help="remote hosts").add_subparsers(dest="action",
                                                                        required=True)
    check = hosts.add_parser("check", help="connect and report Python, uv, disk, SLURM")
    check.add_argument("host", help="ssh config alias or user@name:port")
    args = parser.parse_args(argv)
    if args.command == "hosts":
        from ._errors import PyjouleError
        from ._transport.ssh import check_host

        try:
            report = check_host(args.host)
        except PyjouleError as exc:
            print(f"pyjoule: {exc}", file=sys.stderr)
            return 2
        print(report)
        return 0 if report.ok else 1
    if args.command == "runs":
        import pandas as pd

        from ._api import runs

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(runs(args.cache).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
