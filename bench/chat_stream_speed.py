"""Chat's side-by-side answer in the page against the terminal's: tokens/s per pane, same model, prompt and settings.

    python bench/chat_stream_speed.py                                  # the embedded model, a random adapter made here
    python bench/chat_stream_speed.py --model tiny                     # a tiny random model: fast tokens, where
                                                                       # the page's cost per update shows most
    python bench/chat_stream_speed.py --model PATH --adapter PATH      # your own (the adapter is copied in)

CLI: `qlora-studio chat --compare --prompt` in a subprocess (studio/chat/terminal.py), which prints each pane's
tokens/s. Page: the studio served on a free localhost port and driven by headless Chromium (Playwright,
Debian's /usr/bin/chromium) on the same machine: load the model, load the adapter, Send, wait until the
answer ends, read the tokens/s each pane shows. Both sides are greedy with the same max_new_tokens, so they
generate the same tokens. The sides alternate for --rounds rounds, so other work on the machine weighs on both;
medians are printed, with the page/CLI ratio per pane (goal: 0.9x or more). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from served_studio import serve  # noqa: E402 (bench/ is on the path of a script run from it)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SPEED = re.compile(r"(\d+) tokens · ([0-9.]+) tok/s")
CLI_SPEED = re.compile(r"\((\d+) tokens, ([0-9.]+) tok/s\)")
# the text under one pane: the Markdown beside the chatbot in its column
PANE_SPEED = """(id) => document.querySelector('#' + id).closest('.column').innerText"""
# Send stays greyed while the answer streams
STREAMING = "() => document.querySelector('#qs-chat-send').disabled"
PANES = {"base": "qs-chat-base", "adapter": "qs-chat-adapter-answers"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct", help="a model, or 'tiny' (built here)")
    parser.add_argument("--adapter", help="adapter folder (default: a random LoRA adapter made here)")
    parser.add_argument("--prompt", default="你是谁？")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="CLI then page, this many times")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed bench still stops the studio it served
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        workspace = Path(folder)
        model = _model(workspace, args.model)
        config = _config(workspace, model, args.max_new_tokens)
        adapter = _adapter(workspace, model, args.adapter)
        server, url = serve(workspace, config)
        try:
            cli, page = _rounds(url, config, adapter, args.prompt, args.rounds, workspace)
        finally:
            server.terminate()
            server.wait(timeout=60)
    _print(args, cli, page)


def _model(workspace: Path, choice: str) -> str:
    if choice != "tiny":
        return choice
    from studio.dev.tiny_models import build_tiny_model

    return str(build_tiny_model(workspace / "models" / "tiny", hidden=256, layers=4))


def _config(workspace: Path, model: str, max_new_tokens: int) -> Path:
    from studio.config import RunConfig

    config = RunConfig().with_overrides(
        {
            "model.name_or_path": model,
            "quantization.method": "none",
            "generation.temperature": "0",  # greedy: both sides generate the same tokens
            "generation.max_new_tokens": str(max_new_tokens),
        }
    )
    config.save(workspace / "chat.yaml")
    return workspace / "chat.yaml"


def _adapter(workspace: Path, model: str, given: str | None) -> Path:
    """The adapter inside the served workspace (the page refuses folders outside it)."""
    target = workspace / "adapter"
    if given:
        shutil.copytree(given, target)
        return target
    import torch
    from peft import LoraConfig, get_peft_model

    from studio.chat import ChatEngine
    from studio.config import ModelConfig, QuantizationConfig

    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=model), QuantizationConfig(method="none"))
    torch.manual_seed(0)
    peft_model = get_peft_model(engine.model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():  # PEFT starts lora_B at zero: a no-op adapter would answer exactly like the base
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    peft_model.save_pretrained(target)
    engine.model = peft_model.unload()
    engine.unload()
    return target


def _rounds(url: str, config: Path, adapter: Path, prompt: str, rounds: int, workspace: Path):
    from playwright.sync_api import sync_playwright

    cli, page_speeds = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        _open_chat(page, url, adapter)
        for _ in range(rounds):
            cli.append(_cli(config, adapter, prompt, workspace))
            page_speeds.append(_page(page, prompt))
        browser.close()
    return cli, page_speeds


def _cli(config: Path, adapter: Path, prompt: str, workspace: Path) -> dict:
    """One `qlora-studio chat --compare --prompt` (its model loading is not in the tokens/s it prints)."""
    command = [sys.executable, "-m", "studio.cli", "chat", "--config", str(config), "--adapter", str(adapter)]
    result = subprocess.run(
        [*command, "--compare", "--prompt", prompt],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=workspace,  # the runs folder it may make lands in the temporary workspace
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    speeds = CLI_SPEED.findall(result.stderr)
    if result.returncode != 0 or len(speeds) != 2:
        raise SystemExit(f"qlora-studio chat failed:\n{result.stderr[-2000:]}")
    return {pane: (int(tokens), float(rate)) for pane, (tokens, rate) in zip(PANES, speeds)}


def _open_chat(page, url: str, adapter: Path) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=600_000)
    picker = page.locator("#qs-chat-adapter input")
    picker.fill(str(adapter))
    picker.press("Enter")
    page.locator("#qs-chat-load-adapter").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"Adapter .* loaded onto")).wait_for(timeout=120_000)


def _page(page, prompt: str) -> dict:
    """Send once on a cleared chat; each pane's tokens/s as the page shows it when the answer has ended."""
    page.get_by_role("button", name="Clear history", exact=True).click()
    page.wait_for_function(f"() => !/tok\\/s/.test(({PANE_SPEED})('{PANES['base']}'))", timeout=30_000)
    page.locator("#qs-chat-prompt textarea").fill(prompt)
    sent = time.perf_counter()
    page.locator("#qs-chat-send").click()
    page.wait_for_function(f"() => /tok\\/s/.test(({PANE_SPEED})('{PANES['base']}'))", timeout=600_000)
    page.wait_for_function(f"() => !({STREAMING})()", timeout=900_000, polling=100)
    waited = time.perf_counter() - sent
    speeds = {}
    for pane, element in PANES.items():
        shown = SPEED.findall(page.evaluate(PANE_SPEED, element))
        if not shown:
            raise SystemExit(f"the {pane} pane shows no tokens/s: {page.evaluate(PANE_SPEED, element)[-500:]}")
        speeds[pane] = (int(shown[-1][0]), float(shown[-1][1]))
    return {**speeds, "waited_s": waited}


def _print(args, cli: list[dict], page: list[dict]) -> None:
    print(
        f"{args.model}, greedy, at most {args.max_new_tokens} new tokens, prompt {args.prompt!r}, "
        f"{len(cli)} rounds (CLI then page), medians:"
    )
    rates = {}
    for side, runs in (("CLI  (qlora-studio chat --compare)", cli), ("page (headless Chromium)", page)):
        rates[side] = {pane: statistics.median(run[pane][1] for run in runs) for pane in PANES}
        tokens = "/".join(str(runs[-1][pane][0]) for pane in PANES)
        per_round = "; ".join(" ".join(f"{run[pane][1]:.1f}" for pane in PANES) for run in runs)
        shown = ", ".join(f"{pane} {rates[side][pane]:.1f} tok/s" for pane in PANES)
        print(f"  {side:36} {shown}  ({tokens} tokens; rounds: {per_round})")
    print(f"  page from Send to the answer's end: {statistics.median(run['waited_s'] for run in page):.1f} s")
    cli_rates, page_rates = rates.values()
    ratios = ", ".join(f"{pane} {page_rates[pane] / cli_rates[pane]:.2f}x" for pane in PANES if cli_rates[pane])
    print(f"  page / CLI tokens/s per pane: {ratios} (goal: 0.9x or more)")


if __name__ == "__main__":
    main()
