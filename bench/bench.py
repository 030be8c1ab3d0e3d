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
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import baseline_figures  # noqa: E402
import cluster  # noqa: E402
import concurrency  # noqa: E402
import context_memory  # noqa: E402
import figures  # noqa: E402
import files_bench  # noqa: E402
import medians  # noqa: E402
import network_cost  # noqa: E402
import packages_bench  # noqa: E402
import server_cpu  # noqa: E402
from baseline import Baseline  # noqa: E402
from figures import Plan  # noqa: E402
from machine import guest_halt_poll_ns, machine_info, read  # noqa: E402
from options import parse_args  # noqa: E402
from server import CLIENTS, Api, Server  # noqa: E402
from table import details, table  # noqa: E402
from targets import BASELINE_FIGURES, FIGURES, judge  # noqa: E402

BASELINE_ENV_VARS = [
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MPLBACKEND",
    "PYTHONPATH",
]


def _error(exc: BaseException) -> dict:
    return {
        "error": f"{type(exc).__name__}: {exc}"[:2000],
        "traceback": traceback.format_exc()[-4000:],
    }


def _measure(rec: dict, side: str, measure: Callable[[], dict]) -> None:
    """``rec[side]`` from ``measure()``, or its error and traceback."""
    try:
        rec[side] = measure()
    except Exception as exc:
        err = _error(exc)
        rec[f"{side}_error"] = err["error"]
        rec[f"{side}_traceback"] = err["traceback"]


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
        rec: dict = {"title": FIGURES[name].title, "target": FIGURES[name].target}
        if cellbox is not None:
            if self.api is None:
                rec["cellbox_error"] = "server unavailable"
            else:
                time.sleep(self.plan.settle_s)
                _measure(rec, "cellbox", cellbox)
        if baseline is not None:
            if self.baseline is None:
                rec["baseline_error"] = self.baseline_error
            else:
                _measure(rec, "baseline", baseline)
        self.records[name] = rec
        return rec

    def warm(self, name: str, language: str | None, with_baseline: bool) -> None:
        """Interleaved rounds on warm contexts (one per client kind) and a warm kernel."""
        rec: dict = {"title": FIGURES[name].title, "target": FIGURES[name].target}
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
        if "after_idle" in summaries:
            rec["after_idle"] = summaries.pop("after_idle")
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
            self._baseline_scipy = baseline_figures.baseline_scipy(self.baseline, self.plan)
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
                lambda: baseline_figures.baseline_cold_start(self.baseline, plan),
            ),
            "burst": lambda: self.record(
                "burst", lambda: concurrency.burst(concurrent_client, plan)
            ),
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
                lambda: context_memory.context_pss(api, plan, self.server_pid),
                lambda: self.baseline_scipy()["pss"],
            ),
            "warm_ts": lambda: self.warm("warm_ts", "typescript", with_baseline=False),
            "server_cpu": lambda: self.record(
                "server_cpu",
                lambda: server_cpu.per_warm_execution(
                    self.new_client("stdlib"), plan, self.server_pid
                ),
            ),
            "ts_history": lambda: self.record("ts_history", lambda: figures.ts_history(api, plan)),
            "new_ts": lambda: self.record(
                "new_ts", lambda: figures.new_context_latency(api, plan, "1", "1", "typescript")
            ),
            "async_first": lambda: self.record(
                "async_first",
                lambda: figures.async_first_event(self.new_client("stdlib"), plan),
            ),
            "throughput": lambda: self.record(
                "throughput",
                lambda: concurrency.throughput(concurrent_client, plan, self.server_pid),
            ),
            "files": lambda: self.record(
                "files", lambda: files_bench.transfer(self.url, self.api_key, self.server_pid)
            ),
            "pkg_install": lambda: self.record(
                "pkg_install",
                lambda: packages_bench.install_seen_wheel(api, self.args.quick, plan.pause_s),
                lambda: packages_bench.pip_into_fresh_directory(self.args.quick),
            ),
            "new_py_network": lambda: self.record(
                "new_py_network",
                lambda: network_cost.figure(
                    api,
                    plan,
                    CLIENTS[self.args.client],
                    None if self.args.server_url else self.args.server_arg,
                ),
            ),
            "forwarding": lambda: self.record(
                "forwarding", lambda: cluster.forwarding_overhead(plan, self.args.client)
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


def one_run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Every selected figure, measured once; prints its table and writes its JSON."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    bench = Bench(args)
    with guest_halt_poll_ns(args.guest_halt_poll_ns):
        info = machine_info()
        print(f"cpu idle: {info['cpuidle']}", flush=True)
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
    info["loadavg_end"] = read("/proc/loadavg").split()[:3]
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "argv": argv,
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
    print()
    if bench.server_error:
        print(f"cellbox server unavailable: {bench.server_error}\n")
    print(table(bench.records))
    print()
    print(details(bench.records))
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    report["file"] = _write(Path(args.results_dir), f"{stamp}.json", report)
    print(f"\nwrote {report['file']} and latest.json ({report['duration_s']} s)")
    return report


def _write(results: Path, name: str, report: dict) -> str:
    """``report`` as ``name`` and as ``latest.json`` in ``results``; the first's path."""
    results.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(report, indent=2, default=str) + "\n"
    (results / name).write_text(payload)
    (results / "latest.json").write_text(payload)
    return str(results / name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, __doc__.split("\n\n")[0])
    if os.getuid() != 0:
        print("note: not root; the PSS figure may not be able to read worker processes")
    reports = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"\n=== run {number} of {args.runs} ===", flush=True)
        reports.append(one_run(args, argv))
    if args.runs > 1:
        combined = medians.combine([r["figures"] for r in reports])
        print(f"\n{medians.report(combined, args.runs)}")
        summary = {
            "started_at": reports[0]["started_at"],
            "duration_s": round(sum(r["duration_s"] for r in reports), 1),
            "argv": argv,
            "runs": [Path(r["file"]).name for r in reports],  # beside this file
            "machine": reports[-1]["machine"],
            "plan": reports[-1]["plan"],
            "figures": combined,
        }
        name = f"{Path(reports[0]['file']).stem}-medians.json"
        path = _write(Path(args.results_dir), name, summary)
        print(f"\nwrote {path} and latest.json (the medians of the {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
