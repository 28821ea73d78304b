"""`qlora-studio`: the command line. The train flags are generated from the typed config."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from studio.config import ConfigError, RunConfig
from studio.config.base import Section


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a readable line beats a traceback for expected failures
        from studio.data.registry import DataError
        from studio.device_lock import DeviceBusy
        from studio.modeling.loader import ModelLoadError
        from studio.service import RunNotFound

        from studio.chat import AdapterError, EngineError

        if isinstance(error, (DataError, ModelLoadError, DeviceBusy, RunNotFound, AdapterError, EngineError, ValueError)):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-studio", description="Fine-tune chat LLMs with QLoRA.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a LoRA adapter from a YAML config and/or flags")
    train.add_argument("config", nargs="?", help="YAML config (flags override its values)")
    train.add_argument("--detach", action="store_true", help="start the run and return without following it")
    train.add_argument("--runs-dir", help="folder of run folders (default: training.output_dir)")
    _add_config_flags(train)
    train.set_defaults(handler=_train)

    runs = commands.add_parser("runs", help="list runs and their status")
    runs.add_argument("--runs-dir", default="runs")
    runs.set_defaults(handler=_runs)

    for name, helptext, handler in (
        ("abort", "checkpoint and stop a running run", _abort),
        ("resume", "continue an aborted or failed run from its latest checkpoint", _resume),
    ):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("run_id")
        command.add_argument("--runs-dir", default="runs")
        command.set_defaults(handler=handler)

    config = commands.add_parser("config", help="print a config as YAML and as the equivalent command")
    config.add_argument("config", nargs="?")
    _add_config_flags(config)
    config.set_defaults(handler=_config)

    preview = commands.add_parser("preview", help="show the first rows and size of the configured datasets")
    preview.add_argument("config", nargs="?")
    preview.add_argument("--rows", type=int, default=3)
    _add_config_flags(preview)
    preview.set_defaults(handler=_preview)

    chat = commands.add_parser("chat", help="chat with the base model and/or an adapter in the terminal")
    chat.add_argument("--config", help="YAML config (model, quantization, generation sections are used)")
    chat.add_argument("--adapter", help="LoRA adapter folder, e.g. runs/RUN_ID/adapter")
    chat.add_argument("--compare", action="store_true", help="answer with the base model and the adapter, labelled")
    chat.add_argument("--prompt", help="ask once, print the answer(s) and exit")
    _add_config_flags(chat)
    chat.set_defaults(handler=_chat)

    evaluate = commands.add_parser("eval", help="eval loss, perplexity, BLEU-4 and ROUGE of the base and/or an adapter")
    evaluate.add_argument("config", nargs="?", help="YAML config (model, data, generation, evaluation sections)")
    evaluate.add_argument("--adapter", help="LoRA adapter folder, e.g. runs/RUN_ID/adapter")
    evaluate.add_argument("--compare", action="store_true", help="score the base model too, on the same samples")
    _add_config_flags(evaluate)
    evaluate.set_defaults(handler=_eval)

    export = commands.add_parser("export", help="merge an adapter into its base and save a standard model folder")
    export.add_argument("config", nargs="?", help="YAML config (model and export sections)")
    export.add_argument("--adapter", required=True, help="LoRA adapter folder")
    export.add_argument("--out", help="output folder (export.output_dir)")
    _add_config_flags(export)
    export.set_defaults(handler=_export)

    webui = commands.add_parser("webui", help="serve the studio in the browser")
    webui.add_argument("--host", default="127.0.0.1")
    webui.add_argument("--port", type=int, default=7860)
    webui.add_argument("--auth", help="require a login, as user:password")
    webui.add_argument("--runs-dir", default="runs")
    webui.add_argument("--config", help="YAML config whose values fill the form at start")
    webui.set_defaults(handler=_webui)
    return parser


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--section.field` flag per config field, help and choices taken from the models."""
    for section_name, section_field in RunConfig.model_fields.items():
        section_type = section_field.annotation
        group = parser.add_argument_group(section_name)
        if not (isinstance(section_type, type) and issubclass(section_type, Section)):
            group.add_argument(f"--{section_name}", dest=f"set:{section_name}", metavar="VALUE", help=section_field.description)
            continue
        for name, info in section_type.model_fields.items():
            choices = _choices(info.annotation)
            hint = f" One of: {', '.join(map(str, choices))}." if choices else ""
            group.add_argument(
                f"--{section_name}.{name}",
                dest=f"set:{section_name}.{name}",
                metavar="VALUE",
                help=f"{info.description}{hint} (default: {info.default})".replace("%", "%%"),
            )


def _choices(annotation) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def _load_config(args) -> RunConfig:
    config = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    overrides = {k.removeprefix("set:"): v for k, v in vars(args).items() if k.startswith("set:") and v is not None}
    return config.with_overrides(overrides) if overrides else config


def _train(args) -> int:
    from studio.follow import follow_run
    from studio.service import TrainingService

    config = _load_config(args)
    service = TrainingService(args.runs_dir or config.training.output_dir)
    run_id = service.start(config)
    print(f"Started run {run_id} in {service.runs_dir / run_id}")
    if args.detach:
        return 0
    return follow_run(service, run_id)


def _runs(args) -> int:
    from studio.service import TrainingService

    runs = TrainingService(args.runs_dir).list_runs()
    if not runs:
        print(f"No runs in {Path(args.runs_dir).resolve()}")
        return 0
    print(f"{'RUN':40} {'STATE':9} {'STEP':>11} {'DEVICE':6} MESSAGE")
    for status in runs:
        steps = f"{status.step}/{status.total_steps or '?'}"
        print(f"{status.run_id:40} {status.state:9} {steps:>11} {status.device or '-':6} {status.message[:60]}")
    return 0


def _abort(args) -> int:
    from studio.service import TrainingService

    service = TrainingService(args.runs_dir)
    service.abort(args.run_id)
    print(f"Asked run {args.run_id} to checkpoint and stop.")
    return 0


def _resume(args) -> int:
    from studio.follow import follow_run
    from studio.service import TrainingService

    service = TrainingService(args.runs_dir)
    service.resume(args.run_id)
    return follow_run(service, args.run_id)


def _config(args) -> int:
    config = _load_config(args)
    print(config.to_yaml())
    print(f"# Equivalent command:\n# {config.to_command()}")
    return 0


def _preview(args) -> int:
    from studio.data.preview import preview_datasets

    config = _load_config(args)
    print(preview_datasets(config.data, rows=args.rows).to_text())
    return 0


def _chat(args) -> int:
    from studio.chat.terminal import run_chat

    return run_chat(_load_config(args), args.adapter, args.compare, args.prompt)


def _eval(args) -> int:
    import json

    from studio.chat import ChatEngine
    from studio.evaluation.runner import evaluate

    config = _load_config(args)
    report = evaluate(
        ChatEngine(), config, args.adapter, args.compare,
        progress=lambda e: print(f"[{e.stage}] {e.done}/{e.total}", file=sys.stderr, flush=True),
    )
    print(f"Results in {report.out_dir}", file=sys.stderr)
    print(json.dumps(report.metrics, ensure_ascii=False, indent=2))
    return 0


def _export(args) -> int:
    from studio.export.merge import ExportError, export_merged

    config = _load_config(args)
    if args.out:
        config = config.with_overrides({"export.output_dir": args.out})
    try:
        report = export_merged(config, args.adapter, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Exported to {report.out_dir} ({report.dtype}); reload check: max logit difference {report.max_logit_diff:.3g} "
          f"<= {report.tolerance:g}. Files: {', '.join(report.files)}")
    return 0


def _webui(args) -> int:
    import os

    # The UI lives in the `app` package, which the backend never imports: hand the process over to it.
    command = [sys.executable, "-m", "app", "--host", args.host, "--port", str(args.port), "--runs-dir", args.runs_dir]
    if args.auth:
        command += ["--auth", args.auth]
    if args.config:
        command += ["--config", args.config]
    os.execv(sys.executable, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
