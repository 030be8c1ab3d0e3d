"""cellbox soak test under chaos: many clients, killed workers, a killed zygote, bombs.

Run from the repository root, as root (it signals the server's sandboxed processes):

    .venv/bin/python bench/soak.py [--duration 600] [--clients 16] [--seed N]

Starts ``cellbox serve`` on a free loopback port with small limits, warms it up, then for
``--duration`` seconds runs the clients (:mod:`soak_clients`) while a chaos thread
(:class:`soak_host.Chaos`) kills Python and TypeScript workers, any process of a worker's
unit, the zygote, and SIGSTOPs workers. The warm-up has chaos too: the level it leaves is
that of a server that has been through every path once (their first use grows RSS once,
by ~3 %); what grows with time shows after it. Between the phases every client deletes
its context, so the server's RSS and open fds are compared in the same state. At the end the
server gets SIGTERM and must leave nothing behind. Traffic stays on loopback.

Prints the figures and exits 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import Server  # noqa: E402
from soak_clients import SoakClient, Tally  # noqa: E402
from soak_host import Chaos, Host, settle  # noqa: E402

POOL_PYTHON, POOL_TYPESCRIPT = 2, 1
SERVER_ARGS = [
    "--memory-limit-mb=256",
    "--pids-limit=64",
    "--max-contexts=24",
    f"--pool-python={POOL_PYTHON}",
    f"--pool-typescript={POOL_TYPESCRIPT}",
    "--interrupt-grace-s=1",
    "--shutdown-grace-s=5",
]
RSS_TOLERANCE = 0.05  # "within a few %" of the level after warm-up
FD_TOLERANCE = 0.05


def run_clients(
    server: Server, tally: Tally, count: int, seconds: float, seed: int, chaos: Chaos | None
) -> None:
    stop = threading.Event()
    clients = [
        SoakClient(
            i,
            "typescript" if i % 4 == 3 else "python",
            server.url,
            server.api_key,
            tally,
            seed * 1000 + i,
            stop,
        )
        for i in range(count)
    ]
    for client in clients:
        client.start()
    if chaos is not None:
        chaos.start()
    stop.wait(seconds)
    if chaos is not None:
        chaos.done.set()
        chaos.join()
    stop.set()
    for client in clients:
        client.join(timeout=120)
        if client.is_alive():
            tally.fail(f"{client.name} did not finish within 120 s of the end")


def quiet_level(server: Server, host: Host) -> dict[str, object]:
    """Once the clients are gone: no context left, pools refilled; the server's figures."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}
    ) as api:
        leftover = api.get("/contexts").json()["items"]
        for context in leftover:
            api.delete(f"/contexts/{context['id']}")
    expected_units = POOL_PYTHON + POOL_TYPESCRIPT + 1  # the warm workers and the zygote
    settled = settle(
        lambda: len(host.units()) == expected_units and len(host.workdirs()) == expected_units - 1,
        60,
    )
    time.sleep(2)
    return {
        "contexts left by clients": len(leftover),
        "settled": settled,
        "units": {name: host.describe(pids) for name, pids in sorted(host.units().items())},
        "workdirs": len(host.workdirs()),
        "rss_kb": host.server_rss_kb(),
        "fds": host.server_fds(),
        "stray processes": host.stray_processes(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=600, help="seconds of chaos (default 600)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up (default: 10%% of the duration, 10..60)",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--chaos-period", type=float, default=1.5, help="mean seconds between blows"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, max(10.0, args.duration / 10))

    server = Server(SERVER_ARGS)
    server.start()
    assert server.pid is not None
    host = Host(server.pid, server.state_dir)
    tally = Tally()
    failures: list[str] = []
    chaos: Chaos | None = None
    started = time.monotonic()
    try:
        print(
            f"soak: seed {args.seed}, {args.clients} clients, warm-up {warmup:.0f} s, chaos {args.duration:.0f} s",
            flush=True,
        )
        warming = Chaos(host, args.chaos_period, args.seed - 1)
        run_clients(server, tally, args.clients, warmup, args.seed, warming)
        base = quiet_level(server, host)
        print(f"after warm-up: {base}", flush=True)
        chaos = Chaos(host, args.chaos_period, args.seed)
        run_clients(server, tally, args.clients, args.duration, args.seed + 1, chaos)
        end = quiet_level(server, host)
        print(f"after chaos:   {end}", flush=True)
        failures += compare(base, end)
    finally:
        how = stop_server(server)
        leftovers = host.leftovers()
    failures += [f"left behind after SIGTERM: {item}" for item in leftovers]
    failures += tally.failures
    print(report(args, tally, chaos, time.monotonic() - started, how, leftovers))
    log = server.log_path.read_text(errors="replace").splitlines()
    tracebacks = [i for i, line in enumerate(log) if "Traceback" in line]
    if tracebacks:
        first = tracebacks[0]
        excerpt = "\n".join(log[max(0, first - 5) : first + 40])
        failures.append(f"the server logged {len(tracebacks)} traceback(s), first:\n{excerpt}")
    if failures:
        kept = Path(f"/tmp/cellbox-soak-{args.seed}-server.log")
        kept.write_bytes(server.log_path.read_bytes())
        print(f"(server log kept in {kept})")
    server.cleanup()
    if failures:
        print(f"\nFAILED ({len(failures)}):")
        for failure in failures[:40]:
            print(f"  - {failure}")
        return 1
    print("\nPASSED")
    return 0


def compare(base: dict[str, object], end: dict[str, object]) -> list[str]:
    problems = []
    for state, name in ((base, "after warm-up"), (end, "after chaos")):
        if not state["settled"]:
            problems.append(f"{name}: units/work directories did not settle: {state}")
        if state["stray processes"]:
            problems.append(f"{name}: processes outside any unit: {state['stray processes']}")
    rss, fds = int(end["rss_kb"]), int(end["fds"])  # type: ignore[call-overload]
    if rss > int(base["rss_kb"]) * (1 + RSS_TOLERANCE):  # type: ignore[call-overload]
        problems.append(f"server RSS grew: {base['rss_kb']} kB -> {rss} kB")
    if fds > int(base["fds"]) * (1 + FD_TOLERANCE):  # type: ignore[call-overload]
        problems.append(f"server fds grew: {base['fds']} -> {fds}")
    return problems


def stop_server(server: Server) -> str:
    process = server.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
        return f"exited {time.strftime('%H:%M:%S')} on SIGTERM (status {process.returncode})"
    except Exception:
        server.stop()
        return "did not exit within 30 s of SIGTERM: killed"


def report(
    args: argparse.Namespace,
    tally: Tally,
    chaos: Chaos | None,
    elapsed: float,
    how: str,
    leftovers: list[str],
) -> str:
    lines = [
        "",
        f"soak: {elapsed:.0f} s in all, {args.clients} clients, seed {args.seed}",
        f"requests: {tally.requests}",
        "answers by operation and kind:",
    ]
    lines += [f"  {count:7d}  {kind}" for kind, count in sorted(tally.outcomes.items())]
    if chaos is not None:
        lines.append(
            "chaos: " + ", ".join(f"{name} {n}" for name, n in sorted(chaos.blows.items()))
        )
    lines.append(f"server: {how}")
    lines.append(f"leaks after shutdown: {len(leftovers)}")
    lines.append(f"failures: {len(tally.failures)} from clients")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
