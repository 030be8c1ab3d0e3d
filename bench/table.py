"""The benchmark's markdown table and the one-line details of each figure."""

from __future__ import annotations

from targets import value


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _number(name: str, number: float) -> str:
    """A figure's value in its unit."""
    if name in ("pss", "files"):
        return f"{number:.1f} MB"
    if name == "ts_history":
        return f"{number:.3f}"
    if name == "throughput":
        return f"{number:.0f} exec/s"
    return _ms(number)


def _cell(name: str, side: dict | None, error: str | None) -> str:
    number = value(side)
    if number is None:
        if error and error.startswith("skipped"):
            return "skipped"
        return "error" if error else "—"
    if name == "files":
        return side["summary"]  # type: ignore[index]
    return _number(name, number)


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


def _run(name: str, run: dict) -> str:
    """One run's figure, in a combined record (bench/medians.py)."""
    text = "—" if run["value"] is None else _number(name, run["value"])
    if run.get("ratio_vs_baseline") is not None:
        text += f" ({run['ratio_vs_baseline']:.1f}×)"
    if name == "warm_py" and run.get("p99_over_p50") is not None:
        text += f" p99 {run['p99_over_p50']:.2f}× p50"
    return f"{text} {run['result']}"


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
                p99 = f" p99 {summary['p99_ms']:.3f}" if "p99_ms" in summary else ""
                parts.append(
                    f"{side}: p50 {summary['p50_ms']:.3f} p90 {summary['p90_ms']:.3f}{p99} "
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
        idle = rec.get("after_idle")
        if idle:
            parts.append(
                f"first execution after {idle['pause_ms']} ms idle: "
                + ", ".join(
                    f"{side} p50 {idle[side]['p50_ms']:.3f} ms"
                    for side in ("cellbox", "baseline")
                    if side in idle
                )
            )
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
        if name == "server_cpu" and rec.get("cellbox"):
            rounds = ", ".join(f"{us:.0f}" for us in rec["cellbox"]["per_round_us"])
            parts.append(f"per round {rounds} µs of server CPU per execution")
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
        if rec.get("per_run"):
            parts.append("per run: " + ", ".join(_run(name, run) for run in rec["per_run"]))
        out.append(f"- {name}: " + "; ".join(parts))
    return "\n".join(out)
