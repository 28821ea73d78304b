"""The page under load: many open pages polling the studio while a run trains.

    python bench/ui_load.py --pages 20 --seconds 60

Serves the studio on a free localhost port (a fresh workspace in a temporary folder), starts a
run through the page's own Start endpoint, then measures three phases of `--seconds` each:
no pages, `--pages` simulated pages, no pages again. A simulated page makes the HTTP calls a
browser tab makes, with its own Gradio session: the page itself (GET /, which carries the
whole layout) and the page-load call, then the Train tab's poll once a second and, when the
poll's version says the run moved on, the chart draw its browser would fire. Pages open over
`--ramp` seconds (0: all in the same instant). The pages are asyncio tasks in one process (httpx),
so the load generator itself stays light. Prints p50/p95 latency per endpoint, failed requests,
the server's CPU use, and the run's step time under load against without it. Localhost only; bounded in time and page
count. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from served_studio import serve  # noqa: E402 (bench/ is on the path of a script run from it)

MAX_PAGES, MAX_SECONDS = 64, 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which the pages open")
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'embedded', or a model folder")
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    args = parser.parse_args()
    pages, seconds = min(args.pages, MAX_PAGES), min(args.seconds, MAX_SECONDS)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        workspace = Path(folder)
        model = _model(args.model, workspace)
        server, url = _serve(workspace, model)
        try:
            report = _measure(url, workspace, pages, seconds, server.pid, args.ramp)
        finally:
            server.terminate()
            server.wait(timeout=60)
    _print(report, pages, seconds)
    if args.json:
        print(json.dumps(report))


def _model(choice: str, workspace: Path) -> str:
    if choice == "tiny":
        from studio.dev.tiny_models import build_tiny_model

        return str(build_tiny_model(workspace / "models" / "tiny", hidden=256, layers=4))
    return "embedded:SmolLM2-135M-Instruct" if choice == "embedded" else choice


def _serve(workspace: Path, model: str) -> tuple[subprocess.Popen, str]:
    from studio.config import RunConfig

    config = RunConfig().with_overrides(
        {
            "name": "load",
            "model.name_or_path": model,
            "training.max_steps": "100000",
            "training.logging_steps": "1",
            "training.eval_steps": "100000",
            "training.save_steps": "100000",
            "data.max_samples": "200",
        }
    )
    config.save(workspace / "load.yaml")
    return serve(workspace, workspace / "load.yaml")


def _measure(url: str, workspace: Path, pages: int, seconds: float, server_pid: int, ramp: float) -> dict:
    import asyncio

    from gradio_client import Client

    starter = Client(url, verbose=False)
    layout = _endpoint_inputs(workspace / "load.yaml")
    run_id = _start(starter, layout)
    run = workspace / "runs" / run_id
    _wait_for_steps(run, 3)
    quiet_before = _phase(seconds)
    latencies: dict[str, list[float]] = {"page": [], "page_load": [], "poll": [], "draw": []}
    failures: list[str] = []
    cpu_before, began = _cpu_seconds(server_pid), time.time()
    asyncio.run(_pages(url, run_id, pages, seconds, ramp, latencies, failures))
    loaded = (began, time.time())
    server_cores = (_cpu_seconds(server_pid) - cpu_before) / (loaded[1] - loaded[0])
    quiet_after = _phase(seconds)
    starter.predict(run_id, api_name="/abort")
    _wait_until_ended(run)
    steps = _step_times(run)
    return {
        "latency_s": {name: _percentiles(values) for name, values in latencies.items()},
        "requests": {name: len(values) for name, values in latencies.items()},
        "failures": failures[:10],
        "failed": len(failures),
        "server_cores": round(server_cores, 2),
        "step_s_quiet": _mean_in(steps, [quiet_before, quiet_after]),
        "step_s_loaded": _mean_in(steps, [loaded]),
    }


def _endpoint_inputs(config_file: Path):
    """The page the server built (same code, same --config), to learn each endpoint's inputs in order."""
    from app.server import build_page
    from studio.api import Studio
    from studio.config import RunConfig

    return build_page(Studio(tempfile.mkdtemp()), RunConfig.from_yaml(config_file))


def _start(client, layout) -> str:
    """Press Start through the page's endpoint, with the form as the server's --config filled it."""
    import gradio as gr

    form = layout.page.form
    [dependency] = [d for d in layout.demo.fns.values() if d.api_name == "start"]
    values = {c.component: c.to_component_value(form.default(c.path)) for c in form.controls.values()}
    message, runs = client.predict(
        *[values[c] for c in dependency.inputs if not isinstance(c, gr.State)], api_name="/start"
    )
    if "`" not in message:
        raise SystemExit(f"Start was refused: {message}")
    return message.split("`")[1]


async def _pages(
    url: str, run_id: str, pages: int, seconds: float, ramp: float, latencies: dict, failures: list
) -> None:
    import asyncio

    import httpx

    limits = httpx.Limits(max_connections=4 * pages, max_keepalive_connections=4 * pages)
    headers = {"Accept-Encoding": "gzip, deflate, br"}  # as a browser asks
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as http:
        deadline = time.time() + seconds
        opens = [ramp * n / max(1, pages - 1) for n in range(pages)]
        await asyncio.gather(
            *[_page(http, f"bench{n}", run_id, at, deadline, latencies, failures) for n, at in enumerate(opens)]
        )


async def _page(
    http, session: str, run_id: str, opens_at: float, deadline: float, latencies: dict, failures: list
) -> None:
    """One browser tab: load the page, then poll every second and draw the charts when the run moved on."""
    import asyncio

    await asyncio.sleep(opens_at)
    started = time.perf_counter()
    try:
        (await http.get("")).raise_for_status()
        latencies["page"].append(time.perf_counter() - started)
    except Exception as error:  # counted and shown, never hidden
        failures.append(f"page: {type(error).__name__}: {error}")
    await _call(http, "page_load", [], session, latencies, failures)
    drawn = None
    while time.time() < deadline:
        tick = time.time()
        answer = await _call(http, "poll", [run_id, None], session, latencies, failures)  # None: the language State
        if answer and answer[1] != drawn:  # what the hidden version box's change event does in a browser
            drawn = answer[1]
            await _call(http, "draw", [run_id, drawn, None], session, latencies, failures)
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - tick)))  # a page's timer ticks once a second


async def _call(http, api_name: str, data: list, session: str, latencies: dict, failures: list):
    started = time.perf_counter()
    try:
        response = await http.post(f"gradio_api/run/{api_name}", json={"data": data, "session_hash": session})
        response.raise_for_status()
        latencies[api_name].append(time.perf_counter() - started)
        return response.json()["data"]
    except Exception as error:  # counted and shown, never hidden
        failures.append(f"{api_name}: {type(error).__name__}: {error}")
        return None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(seconds: float) -> tuple[float, float]:
    began = time.time()
    time.sleep(seconds)
    return began, time.time()


def _wait_until_ended(run: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if json.loads((run / "status.json").read_text())["state"] in ("finished", "failed", "aborted"):
            return
        time.sleep(0.5)


def _wait_for_steps(run: Path, count: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(_step_times(run)) >= count:
            return
        time.sleep(0.5)
    raise SystemExit("the run did not reach its first steps: " + (run / "worker.log").read_text()[-2000:])


def _step_times(run: Path) -> list[tuple[float, float]]:
    """(wall time, seconds the step took) for each logged step after the first."""
    try:
        lines = (run / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = [json.loads(line) for line in lines if '"type":"step"' in line]
    return [
        (b["time"], (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]))
        for a, b in zip(steps, steps[1:])
        if b["step"] > a["step"]
    ]


def _mean_in(steps, windows) -> float | None:
    inside = [took for at, took in steps if any(start <= at <= end for start, end in windows)]
    return round(statistics.fmean(inside), 4) if inside else None


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max": round(ordered[-1], 3),
    }


def _print(report: dict, pages: int, seconds: float) -> None:
    print(f"{pages} simulated pages for {seconds:.0f} s while a run trains (localhost):")
    print("  (page = GET / with the layout; page_load = the load event; poll every second; draw when the run moved on)")
    for name, stats in report["latency_s"].items():
        print(
            f"  {name:10} {report['requests'][name]:5d} requests  p50 {stats['p50']} s  p95 {stats['p95']} s  max "
            f"{stats['max']} s"
        )
    print(f"  failed requests: {report['failed']}" + "".join(f"\n    {f}" for f in report["failures"]))
    print(f"  server CPU while loaded: {report['server_cores']} cores")
    quiet, loaded = report["step_s_quiet"], report["step_s_loaded"]
    ratio = f"{loaded / quiet:.2f}x" if quiet and loaded else "n/a"
    print(f"  training step: {quiet} s without pages, {loaded} s with them -> step time ratio {ratio}")


if __name__ == "__main__":
    main()
