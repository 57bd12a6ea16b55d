"""Event-to-recommendation latency of a persona worker at one rate: ``bench.e2e``, narrowed.

Kept for its old command line: runs ``bench.e2e`` with the persona worker only, one fixed
rate for ``count / rate`` seconds (at most 60), no search, no burst, no trivial agent.
``bench.e2e`` has the full benchmark (and the comparison with a trivial Faust agent).

    .venv/bin/python -m bench.e2e_latency [--rate 100] [--count 500] [--warmup 5000]
"""

from __future__ import annotations

import argparse

from bench import e2e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="clicks per second")
    ap.add_argument("--count", type=int, default=500, help="timed clicks")
    ap.add_argument("--warmup", type=int, default=5000, help="MovieLens events first")
    args = ap.parse_args()
    window = min(60.0, max(0.5, args.count / args.rate))
    e2e.main(["--targets", "persona", "--rates", f"{args.rate:g}", "--window", f"{window:g}",
              "--no-search", "--burst", "0", "--warmup", str(args.warmup)])


if __name__ == "__main__":
    main()
