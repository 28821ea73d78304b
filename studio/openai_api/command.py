"""`qlora-studio serve`: the OpenAI-compatible API on its own, over a base model and the adapters the command names.

    QLORA_STUDIO_API_KEY=... qlora-studio serve --model.name_or_path Qwen/Qwen2.5-0.5B-Instruct \
        --adapter sft=runs/RUN_ID/adapter --adapter dpo=runs/OTHER/adapter --port 8000

Like the web server, it serves one workspace (the current folder unless --workspace says otherwise): it runs from
there, and the model and adapter paths must lie in it or in a --read-only-dir (studio.workspace). It listens on
127.0.0.1 unless --host says otherwise; any other address needs a key (studio.openai_api.access), and without one
the command refuses to start, before any model is loaded. `--chat.engine vllm` answers through vLLM (a CUDA GPU and
the vllm package; studio.chat.vllm_engine) instead of transformers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from studio.errors import StudioError
from studio.locales import cli_language, in_language, say

if TYPE_CHECKING:
    from studio.config import RunConfig

DEFAULT_PORT = 8000  # where OpenAI-compatible servers usually listen (the web UI keeps 7860)


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (its model, quantization, chat and data.cutoff_len are used)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an adapter folder (runs/RUN_ID/adapter, or a full or freeze run's runs/RUN_ID/model) served as the "
        "model NAME; repeat it for several. The base model is served as its own name (a local folder's name)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs a key")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument(
        "--workspace", default=".", help="the folder the model and adapter paths must lie in (relative paths too)"
    )
    parser.add_argument(
        "--read-only-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder outside the workspace models and adapters may be read from (repeatable)",
    )
    parser.add_argument(
        "--api-key-file",
        help="file with the key(s) clients must send as 'Authorization: Bearer KEY', one per line (or set "
        "QLORA_STUDIO_API_KEY); needed on any address but loopback",
    )


def run_serve(args: argparse.Namespace, config: RunConfig) -> int:
    """Load the model and adapters, then answer until Ctrl-C."""
    from studio.adapters import read_adapter
    from studio.api import Studio
    from studio.chat.engines import check_served
    from studio.chat.whole_models import base_quantization
    from studio.openai_api.access import Access
    from studio.workspace import Workspace

    access = Access.for_host(args.host, args.api_key_file)
    access.check_ready()
    uvicorn = _uvicorn()
    named = [_named(value) for value in args.adapter]
    root = Path(args.workspace).expanduser().resolve()
    if not root.is_dir():
        raise StudioError("page.workspace_not_folder", path=root)
    os.chdir(root)  # relative paths mean paths in the workspace, as they do for the web server's page
    studio = Studio(config.training.output_dir, Workspace.serve(root, config.training.output_dir, args.read_only_dir))
    workspace = studio.workspace
    assert workspace is not None  # made just above
    # every adapter is read before the minute of model loading: a wrong path or name is said at once
    adapters = [read_adapter(workspace.path(path, say("api.adapter_folder")), name) for name, path in named]
    # chat.engine vllm where it cannot run, an adapter it cannot serve, or a GGUF file (Chat's alone)
    check_served(config.chat, adapters, config.model.name_or_path, endpoint=True)
    whole = any(info.whole_model for info in adapters)

    def note(message: str) -> None:
        print(in_language(message, cli_language()), file=sys.stderr, flush=True)

    quantization = base_quantization(config.quantization, whole)
    note(
        studio.load_model(
            config.model, quantization, progress=note, cutoff_len=config.data.cutoff_len, chat=config.chat
        )
    )
    for info in adapters:
        studio.load_adapter(info.path, info.name)
    endpoint = studio.openai_endpoint
    endpoint.access = access
    endpoint.switch(True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    key = say("openai.serving_key") if access.keys else ""
    models = ", ".join(endpoint.models())
    print(
        in_language(say("openai.serving", url=f"http://{host}:{args.port}/v1", models=models, key=key), cli_language())
    )
    sys.stdout.flush()
    uvicorn.run(endpoint.standalone(), host=args.host, port=args.port, log_level="warning")
    return 0


def _named(value: str) -> tuple[str, str]:
    name, separator, path = value.partition("=")
    if not separator or not name.strip() or not path.strip():
        raise StudioError("openai.adapter_flag", value=value)
    return name.strip(), path.strip()


def _uvicorn() -> ModuleType:
    try:
        import starlette  # noqa: F401 (the endpoint's framework: checked before a model loads)
        import uvicorn
    except ImportError:
        raise StudioError("openai.needs_server_packages") from None
    return uvicorn
