"""The benchmark's command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from server import CLIENTS
from targets import FIGURES

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv: list[str], description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few repeats, for smoke checks")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run ipykernel")
    parser.add_argument(
        "--only", default="", help=f"comma-separated figures to run: {','.join(FIGURES)}"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `cellbox serve` (repeatable; write --server-arg=--flag=value)",
    )
    parser.add_argument("--server-url", help="benchmark a running server instead of starting one")
    parser.add_argument(
        "--api-key", default=os.environ.get("CELLBOX_API_KEY"), help="key for --server-url"
    )
    parser.add_argument(
        "--pause-ms",
        type=float,
        help="pause between new-context samples, to let the server refill its pool (default 150)",
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="stdlib",
        help="HTTP client of the latency figures (default stdlib http.client; the warm figures also "
        "report the other client and each client's GET /healthz floor)",
    )
    parser.add_argument(
        "--concurrency-client",
        choices=sorted(CLIENTS),
        default="stdlib",
        help="HTTP client of the burst and throughput threads (default stdlib http.client: "
        "httpx costs several times more CPU per request, and the client shares the cores)",
    )
    parser.add_argument(
        "--guest-halt-poll-ns",
        type=int,
        metavar="NS",
        help="in a KVM guest with the haltpoll cpuidle governor: let idle vCPUs poll this long "
        "before halting during the run (the kernel's default is 200000; this VM boots with 0), "
        "then restore the setting",
    )
    parser.add_argument("--throughput-seconds", type=float, help="length of one throughput run")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="measure everything N times, each a full run with its own JSON, then print and "
        "write the medians of the runs, each figure judged on its medians (default 1)",
    )
    parser.add_argument(
        "--results-dir", default=str(BENCH_DIR / "results"), help="where the JSON goes"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.server_url and not args.api_key:
        parser.error("--server-url needs --api-key (or CELLBOX_API_KEY)")
    if args.server_url and args.server_arg:
        parser.error("--server-arg only applies to a server this benchmark starts")
    args.selected = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = [f for f in args.selected if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {','.join(FIGURES)}")
    return args
