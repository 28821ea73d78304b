"""`qlora-studio chat`: ask once with --prompt, or talk in a loop; --compare answers with the base model beside the
adapter(s); several --adapter answer side by side (base / SFT / SFT+DPO)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from studio.adapters import read_adapter
from studio.chat.engines import check_served
from studio.chat.whole_models import base_quantization
from studio.config import RunConfig
from studio.errors import StudioError
from studio.locales import cli_language, in_language

if TYPE_CHECKING:
    from studio.api import Studio


def run_chat(
    studio: Studio,
    config: RunConfig,
    adapter: str | list[str] | None,
    compare: bool,
    prompt: str | None,
    out: Callable[..., None] = print,
) -> int:
    """Chat through `studio` (studio.api.Studio), the same front door the web UI uses."""
    adapters = [adapter] if isinstance(adapter, str) else list(adapter or [])
    if compare and not adapters:
        raise StudioError("chat.compare_needs_adapter")
    read = [read_adapter(path) for path in adapters]  # a bad folder is refused before a minute of model loading
    # and so is an engine that cannot run here, or an adapter (or a GGUF file) it cannot serve
    check_served(config.chat, read, config.model.name_or_path)
    whole = any(info.whole_model for info in read)
    lang = cli_language()

    def note(message: str) -> None:  # loading progress and its summary, in the command line's language
        out(in_language(message, lang), file=sys.stderr)

    quantization = base_quantization(config.quantization, whole)
    note(
        studio.load_model(
            config.model, quantization, progress=note, cutoff_len=config.data.cutoff_len, chat=config.chat
        )
    )
    loaded = [studio.load_adapter(path) for path in adapters]
    names: list[str | None] = [info.name for info in loaded] or [None]
    kinds = {info.name: "model" if info.whole_model else "adapter" for info in loaded}
    columns = ([None] if compare else []) + names
    labels = ["base" if c is None else f"{kinds[c]} {c}" for c in columns]
    histories: list[list[dict]] = [[] for _ in columns]
    prompts = [prompt] if prompt is not None else _ask_forever()
    for text in prompts:
        if text is None:
            break
        if text.strip() == "/clear":
            histories = [[] for _ in columns]
            continue
        conversations = [h + [{"role": "user", "content": text}] for h in histories]
        *_, final = studio.stream(conversations, columns, config.generation)
        for label, history, conversation, answer in zip(labels, histories, conversations, final):
            prefix = f"[{label}] " if len(columns) > 1 else ""
            out(f"{prefix}{answer.text}")
            out(f"  ({answer.tokens} tokens, {answer.tokens_per_second:.1f} tok/s)", file=sys.stderr)
            history[:] = conversation + [{"role": "assistant", "content": answer.text}]
    return 0


def _ask_forever():
    print("Type a message; /clear forgets the conversation, Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            yield input("> ")
        except EOFError:
            yield None
