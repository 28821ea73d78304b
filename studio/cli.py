"""`qlora-studio`: the command line. The train flags are generated from the typed config.

Every command goes through the same front door as the web UI (studio.api.Studio), without a
workspace: the machine's own user may name any path. A StudioError is printed as one line
(exit 2); Ctrl-C exits quietly (130); anything else is a bug and keeps its traceback. What the studio
says (errors, notes, progress) is printed in QLORA_STUDIO_LANG's language (studio.locales.cli_language).
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import StudioError  # no dependencies: importing it cannot be interrupted for long
from studio.interrupts import CTRL_C
from studio.locales import cli_language, in_language, say

if TYPE_CHECKING:
    from studio.api import Studio
    from studio.combinations import Combination
    from studio.config import RunConfig
    from studio.evaluation.benchmarks import BenchmarkReport

CONFIG_USAGE = "%(prog)s [CONFIG] [--SECTION.FIELD VALUE ...]   (--help lists every field)"
_NUMBER = re.compile(r"^-\d*\.?\d+(e[-+]?\d+)?$", re.IGNORECASE)


def main(argv: list[str] | None = None) -> int:
    CTRL_C.install()  # before anything slow: no press may be lost (studio.interrupts)
    argv = _attach_negative_values(sys.argv[1:] if argv is None else argv)
    try:
        parser = _build_parser()  # imports the config models: inside, so Ctrl-C there is quiet too
        args = parser.parse_args(argv)
        return args.handler(args)
    except StudioError as error:
        print(say("cli.error", error=error).text(cli_language()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


def _said(thing: object) -> str:
    """A Message (or anything else the studio hands back) as the command line's reader reads it."""
    return in_language(thing, cli_language())


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--training.learning_rate -1e-3` would read as a flag: join such values as `--flag=-1e-3`."""
    joined, index = [], 0
    while index < len(argv):
        token = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token.startswith("--") and "=" not in token and following is not None and _NUMBER.match(following):
            joined.append(f"{token}={following}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-studio", description="Fine-tune chat LLMs with QLoRA.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, helptext: str, handler: Callable[[argparse.Namespace], int], config_flags: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=helptext,
            description=helptext,
            usage=CONFIG_USAGE if config_flags else None,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    train = command("train", "train a LoRA adapter from a YAML config and/or flags", _train, config_flags=True)
    train.add_argument("config", nargs="?", help="YAML config (flags override its values)")
    train.add_argument("--detach", action="store_true", help="start the run and return without following it")
    train.add_argument("--runs-dir", help="folder of run folders (default: training.output_dir)")
    train.add_argument(
        "--queue",
        action="store_true",
        help="when the devices are busy, wait in the run queue instead of refusing; the run starts when they free "
        "up (this command keeps the queue while it follows; a running web server keeps it too)",
    )
    _add_config_flags(train)

    from studio.sweeps.commands import add_sweep_flags, add_sweeps_flags

    sweep = command(
        "sweep",
        "queue one run per combination of a few fields' values (a grid, or random draws), then rank them",
        _sweep,
        config_flags=True,
    )
    add_sweep_flags(sweep)
    _add_config_flags(sweep)
    add_sweeps_flags(command("sweeps", "list sweeps, rank a sweep's runs, wait for them or cancel the sweep", _sweeps))

    runs = command("runs", "list runs and their status, or compare some side by side", _runs)
    runs.add_argument("--runs-dir", default="runs", help="folder of run folders")
    runs.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN_ID",
        help="print the comparison table of these runs "
        "(config fields that differ, best eval loss, latest BLEU/ROUGE, duration, tokens/s, peak memory)",
    )

    abort = command("abort", "checkpoint and stop a running run", _abort)
    resume = command("resume", "continue an aborted or failed run from a checkpoint", _resume)
    resume.add_argument(
        "--checkpoint",
        type=int,
        metavar="STEP",
        help="the step of the checkpoint to continue from (default: the newest one that loads)",
    )
    for sub in (abort, resume):
        sub.add_argument("run_id")
        sub.add_argument("--runs-dir", default="runs", help="folder of run folders")

    config = command("config", "print a config as YAML and as the equivalent command", _config, config_flags=True)
    config.add_argument("config", nargs="?", help="YAML config")
    _add_config_flags(config)

    estimate = command(
        "estimate",
        "will it fit, how long: memory per device against what it has free, and the time the run will take",
        _estimate,
        config_flags=True,
    )
    estimate.add_argument("config", nargs="?", help="YAML config")
    estimate.add_argument(
        "--measure",
        action="store_true",
        help="measure the speed first: a few real steps on the run's devices (at most 30 s), instead of relying "
        "on a finished run like this one",
    )
    estimate.add_argument(
        "--runs-dir", help="folder of run folders to find a comparable run in (default: training.output_dir)"
    )
    _add_config_flags(estimate)

    preview = command("preview", "show the first rows and size of the configured datasets", _preview, config_flags=True)
    preview.add_argument("config", nargs="?", help="YAML config")
    preview.add_argument("--rows", type=int, default=3, help="rows shown per dataset")
    _add_config_flags(preview)

    chat = command("chat", "chat with the base model and/or an adapter in the terminal", _chat, config_flags=True)
    chat.add_argument("--config", help="YAML config (model, quantization, generation, chat sections are used)")
    chat.add_argument(
        "--adapter",
        action="append",
        help="adapter folder, e.g. runs/RUN_ID/adapter (a full or freeze run's runs/RUN_ID/model); repeat it to "
        "answer with several side by side (e.g. an SFT adapter and the DPO adapter trained on top of it)",
    )
    chat.add_argument("--compare", action="store_true", help="answer with the base model too, labelled")
    chat.add_argument("--prompt", help="ask once, print the answer(s) and exit")
    _add_config_flags(chat)

    evaluate = command(
        "eval", "eval loss, perplexity, BLEU-4 and ROUGE of the base and/or an adapter", _eval, config_flags=True
    )
    evaluate.add_argument("config", nargs="?", help="YAML config (model, data, generation, evaluation sections)")
    evaluate.add_argument(
        "--adapter", help="adapter folder, e.g. runs/RUN_ID/adapter (a full or freeze run's runs/RUN_ID/model)"
    )
    evaluate.add_argument("--compare", action="store_true", help="score the base model too, on the same samples")
    evaluate.add_argument(
        "--benchmark",
        metavar="TASK[,TASK]",
        help="lm-evaluation-harness tasks or groups to run too (e.g. ceval_zh_demo); with --evaluation.held_out "
        "false only these",
    )
    _add_config_flags(evaluate)

    export = command(
        "export", "merge an adapter into its base and save a model folder or one GGUF file", _export, config_flags=True
    )
    export.add_argument("config", nargs="?", help="YAML config (model and export sections)")
    export.add_argument("--adapter", help="adapter folder, or a full or freeze run's model folder (saved again)")
    export.add_argument(
        "--combine",
        action="append",
        metavar="FOLDER=WEIGHT",
        help="merge a weighted combination of LoRA adapters instead of --adapter (repeat: one per adapter)",
    )
    export.add_argument(
        "--combination-type",
        default="linear",
        help="peft's add_weighted_adapter type: linear (same ranks), cat, svd, ties, dare_linear, dare_ties, "
        "magnitude_prune (these four with --density)",
    )
    export.add_argument("--density", type=float, help="share of each adapter's weights kept (ties, dare_*, ...)")
    export.add_argument("--out", help="output folder (default: export.output_dir)")
    export.add_argument("--format", choices=["safetensors", "gguf"], help="same as --export.format")
    export.add_argument(
        "--gguf-type",
        metavar="TYPE",
        help="same as --export.gguf_type: f16, bf16, q8_0, q5_1, q5_0, "
        "q4_1, q4_0 or f32 (k-quants such as q4_k_m are refused: llama.cpp's llama-quantize makes them)",
    )
    _add_config_flags(export)

    push = command(
        "push",
        "upload an adapter or an export folder to a Hugging Face model repo (token: HF_TOKEN or "
        "`hf auth login`, never a flag)",
        _push,
    )
    push.add_argument(
        "folder", help="an adapter folder (runs/RUN_ID/adapter), a run's model folder (runs/RUN_ID/model) or an export"
    )
    push.add_argument("--repo", required=True, help="owner/name of the model repo (created if missing)")
    push.add_argument("--public", action="store_true", help="make a new repo public (default: private)")

    from studio.serving import add_serve_flags

    webui = command("webui", "serve the studio in the browser", _webui)
    add_serve_flags(webui)

    from studio.openai_api.command import add_flags as add_api_flags

    api = command(
        "serve",
        "answer OpenAI's API (/v1/models, /v1/chat/completions, /v1/completions) with a base model and adapters",
        _serve,
        config_flags=True,
    )
    add_api_flags(api)
    _add_config_flags(api)
    return parser


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--section.field` flag per config field, help and choices taken from the models."""
    from studio.config import RunConfig
    from studio.config.base import Section

    for section_name, section_field in RunConfig.model_fields.items():
        section_type = section_field.annotation
        group = parser.add_argument_group(section_name)
        if not (isinstance(section_type, type) and issubclass(section_type, Section)):
            group.add_argument(
                f"--{section_name}",
                dest=f"set:{section_name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=f"{section_field.description} (default: {section_field.default})",
            )
            continue
        for name, info in section_type.model_fields.items():
            choices = _choices(info.annotation)
            hint = f" One of: {', '.join(map(str, choices))}." if choices else ""
            group.add_argument(
                f"--{section_name}.{name}",
                dest=f"set:{section_name}.{name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=f"{info.description}{hint} (default: {info.default})".replace("%", "%%"),
            )


def _choices(annotation: object) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def _load_config(args: argparse.Namespace) -> RunConfig:
    from studio.config import RunConfig

    config = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    overrides = {k.removeprefix("set:"): v for k, v in vars(args).items() if k.startswith("set:") and v is not None}
    return config.with_overrides(overrides) if overrides else config


def _studio(runs_dir: str) -> Studio:
    from studio.api import Studio

    return Studio(runs_dir)


def _train(args: argparse.Namespace) -> int:
    """Ctrl-C before the worker exists ends the command (130) with nothing left behind; once it exists, Ctrl-C asks
    the run to checkpoint and stop, and the command follows it to its end."""
    config = _load_config(args)
    studio = _studio(args.runs_dir or config.training.output_dir)
    created: list[str] = []

    def on_created(run_id: str) -> None:
        created.append(run_id)
        CTRL_C.check()  # a press whose KeyboardInterrupt was swallowed during the checks: start nothing

    try:
        run_id = studio.start(config, queue=args.queue, on_created=on_created)
        with CTRL_C.counting():
            return _follow_new_run(studio, config, run_id, args)
    except KeyboardInterrupt:
        CTRL_C.handled()
        if not created or not studio.service.exists(created[0]):
            raise  # the start was undone: nothing runs (main says "Interrupted", 130)
        with CTRL_C.counting():  # it started just before the press arrived
            return _stop_and_follow(studio, created[0])


def _follow_new_run(studio: Studio, config: RunConfig, run_id: str, args: argparse.Namespace) -> int:
    from studio.control.follow import follow_run

    status = studio.status(run_id)
    if status.state == "queued":
        print(f"Queued run {run_id} in {studio.runs_dir / run_id}: {status.message}")
        if args.detach:
            print("It starts when its devices are free while a web server or a following command keeps the queue.")
            return 0
        studio.service.keep_queue()
    else:
        print(f"Started run {run_id} in {studio.runs_dir / run_id}")
    if args.detach:
        return 0
    for line in studio.other_node_commands(config, run_id) if config.distributed.nnodes > 1 else []:
        print(f"Waiting for the other nodes; run on each:\n{line}")
    return follow_run(studio.service, run_id, interrupts=CTRL_C.take)


def _stop_and_follow(studio: Studio, run_id: str) -> int:
    from studio.control.follow import ask_to_stop, follow_run

    print(f"Started run {run_id} in {studio.runs_dir / run_id}")
    ask_to_stop(studio.service, run_id, stopping=False)
    return follow_run(studio.service, run_id, interrupts=CTRL_C.take, stopping=True)


def _sweep(args: argparse.Namespace) -> int:
    from studio.sweeps.commands import run_sweep

    config = _load_config(args)
    return run_sweep(_studio(args.runs_dir or config.training.output_dir), config, args)


def _sweeps(args: argparse.Namespace) -> int:
    from studio.sweeps.commands import run_sweeps

    return run_sweeps(_studio(args.runs_dir), args)


def _runs(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    runs = _studio(args.runs_dir).runs()
    if not runs:
        print(f"No runs in {Path(args.runs_dir).resolve()}")
        return 0
    print(f"{'RUN':40} {'STATE':10} {'STEP':>11} {'DEVICE':8} MESSAGE")
    for status in runs:
        steps = f"{status.step}/{status.total_steps or '?'}"
        print(f"{status.run_id:40} {status.state:10} {steps:>11} {status.device or '-':8} {status.message[:80]}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """The page's comparison table, turned on its side for a terminal: one line per column, one column per run."""
    columns = _studio(args.runs_dir).compare(args.compare).table()
    problems = dict(columns).get("problem", [])
    columns = [(name, values) for name, values in columns if name != "problem"]  # long text: a line per run below
    widths = [max(len(cell) for cell in cells) for cells in zip(*(values for _, values in columns))]
    label_width = max(len(name) for name, _ in columns)
    for name, values in columns:
        print(f"{name:{label_width}}  " + "  ".join(f"{cell:{width}}" for cell, width in zip(values, widths)).rstrip())
    for run_id, text in zip(columns[0][1], problems):
        if text:
            print(f"{'problem':{label_width}}  {run_id}: {text}")
    return 0


def _abort(args: argparse.Namespace) -> int:
    said = {
        "stopping": f"Asked run {args.run_id} to checkpoint and stop.",
        "cancelled": f"Cancelled run {args.run_id}: it left the queue without starting.",
        "ended": f"Run {args.run_id} has already ended.",
    }
    print(said[_studio(args.runs_dir).abort(args.run_id)])
    return 0


def _resume(args: argparse.Namespace) -> int:
    from studio.control.follow import follow_run

    studio = _studio(args.runs_dir)
    plan = studio.resume(args.run_id, args.checkpoint)
    for note in plan.skipped:
        print(f"[warning] {_said(note)}")
    print(f"Resuming run {args.run_id} from {plan.checkpoint} (step {plan.step}).")
    with CTRL_C.counting():
        return follow_run(studio.service, args.run_id, interrupts=CTRL_C.take)


def _config(args: argparse.Namespace) -> int:
    config = _load_config(args)
    print(config.to_yaml())
    print(f"# Equivalent command:\n# {config.to_command()}")
    print(f"# {_said(_studio(config.training.output_dir).memory_estimate(config))}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    """The fit line and the time line, as the Train tab shows them; exit 1 when the run does not fit."""
    config = _load_config(args)
    studio = _studio(args.runs_dir or config.training.output_dir)
    report = studio.fit(config)
    print(f"Memory: {_said(report.describe())}")
    print(f"# {_said(report.estimate.describe())}")
    try:
        duration = studio.measure_speed(config) if args.measure else studio.time_estimate(config)
        print(f"Time: {_said(duration.describe())}")
    except StudioError as error:
        print(f"Time: {_said(error)}")
    return 0 if report.fits else 1


def _preview(args: argparse.Namespace) -> int:
    config = _load_config(args)
    preview, _ = _studio(config.training.output_dir).preview(config, rows=args.rows, tokens=False)
    print(preview.to_text())
    return 0


def _chat(args: argparse.Namespace) -> int:
    from studio.chat.terminal import run_chat

    config = _load_config(args)
    return run_chat(_studio(config.training.output_dir), config, args.adapter, args.compare, args.prompt)


def _serve(args: argparse.Namespace) -> int:
    from studio.openai_api.command import run_serve

    return run_serve(args, _load_config(args))


def _eval(args: argparse.Namespace) -> int:
    import json

    config = _load_config(args)
    if args.benchmark:
        tasks = [name.strip() for name in args.benchmark.split(",") if name.strip()]
        config = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"benchmarks": tasks})})
    report = _studio(config.training.output_dir).evaluate(
        config,
        args.adapter,
        args.compare,
        progress=lambda e: print(f"[{e.stage}] {e.done}/{e.total}", file=sys.stderr, flush=True),
    )
    print(f"Results in {report.out_dir}", file=sys.stderr)
    if report.benchmarks is not None:
        print(_benchmark_table(report.benchmarks), file=sys.stderr)
    print(json.dumps(report.metrics, ensure_ascii=False, indent=2))
    return 0


def _benchmark_table(report: BenchmarkReport) -> str:
    """Task, metric, each column and the last column's change from the first, one line each."""
    lines = ["task | metric | " + " | ".join(report.columns) + (" | change" if len(report.columns) > 1 else "")]
    for row in report.rows:
        values = [row.values[c] for c in report.columns]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        if len(values) > 1:
            first, last = values[0], values[-1]
            cells.append("-" if first is None or last is None else f"{last - first:+.4f}")
        lines.append(f"{row.alias} | {row.metric} | " + " | ".join(cells))
    return "\n".join(lines)


def _export(args: argparse.Namespace) -> int:
    config = _load_config(args)
    shortcuts = {"export.output_dir": args.out, "export.format": args.format, "export.gguf_type": args.gguf_type}
    if any(shortcuts.values()):
        config = config.with_overrides({key: value for key, value in shortcuts.items() if value})
    from studio.export.gguf_export import GgufReport

    studio = _studio(config.training.output_dir)
    combination = _combination(studio, args) if args.combine else None
    report = studio.export(config, args.adapter, progress=_Progress(), combination=combination)
    if isinstance(report, GgufReport):  # export.format gguf
        print(
            f"Exported {report.out_dir / report.gguf_file} ({report.gguf_type}, {report.size_bytes / 2**20:.1f} MiB); "
            f"reload check: max logit difference {report.max_logit_diff:.3g} from the merged model "
            f"({report.gguf_type} rounding alone: {report.expected_diff:.3g}; same next token at "
            f"{report.agreement:.1%} of "
            f"positions), file vs rounded weights {report.check_diff:.2g} <= {report.tolerance:g}, tokenizer and chat "
            f"template read back equal. Files: {', '.join(report.files)}"
        )
        for line in report.llama_cpp_lines:  # the file in llama.cpp itself, or what installing it would add
            print(_said(line))
        return 0
    print(
        f"Exported to {report.out_dir} ({report.dtype}); reload check: max logit difference "
        f"{report.max_logit_diff:.3g} "
        f"<= {report.tolerance:g}. Files: {', '.join(report.files)}"
    )
    return 0


def _combination(studio: Studio, args: argparse.Namespace) -> Combination:
    """--combine FOLDER=WEIGHT ... as a checked recipe (Studio.combination)."""
    folders = []
    for given in args.combine:
        folder, _, weight = given.rpartition("=")
        try:
            folders.append((folder, float(weight)))
        except ValueError:
            raise StudioError("combine.weights_unreadable", weights=given) from None
    return studio.combination(folders, args.combination_type, args.density)


class _Progress:
    """Export progress on stderr: every message, but per-tensor reports at most once a second (and the last)."""

    def __init__(self):
        self.shown_at = 0.0

    def __call__(self, message: object) -> None:
        import time

        done, total = getattr(message, "done", None), getattr(message, "total", None)
        if done is not None and done < total and time.time() - self.shown_at < 1.0:
            return
        self.shown_at = time.time()
        print(_said(message), file=sys.stderr, flush=True)


def _push(args: argparse.Namespace) -> int:
    report = _studio("runs").push_to_hub(
        args.folder,
        args.repo,
        None,
        private=not args.public,
        progress=lambda m: print(_said(m), file=sys.stderr, flush=True),
    )
    print(f"Uploaded {len(report.files)} files to {report.url}")
    return 0


def _webui(args: argparse.Namespace) -> int:
    import os

    from studio.serving import AUTH_ENV, options_from, to_argv

    # The UI lives in the `app` package, which the backend never imports: hand the process over to it.
    # A password travels in the environment, never in the server's command line (which `ps` shows).
    env = dict(os.environ)
    if args.auth:
        print(
            "warning: --auth puts the password on the command line, where every local user can read it (ps); "
            f"use {AUTH_ENV}=user:password or --auth-file instead.",
            file=sys.stderr,
        )
        env[AUTH_ENV] = args.auth
    os.execve(sys.executable, [sys.executable, "-m", "app", *to_argv(options_from(args))], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
