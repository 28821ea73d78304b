"""`qlora-studio chat`: ask once with --prompt, or talk in a loop; --compare answers with base and adapter."""

from __future__ import annotations

import sys

from studio.chat.adapters import read_adapter
from studio.config import RunConfig
from studio.errors import StudioError


def run_chat(studio, config: RunConfig, adapter: str | None, compare: bool, prompt: str | None, out=print) -> int:
    """Chat through `studio` (studio.api.Studio), the same front door the web UI uses."""
    if compare and not adapter:
        raise StudioError("--compare needs --adapter PATH (the adapter to compare with the base model).")
    if adapter:
        read_adapter(adapter)  # a bad folder is refused before a minute of model loading
    out(studio.load_model(config.model, config.quantization, progress=lambda m: out(m, file=sys.stderr)), file=sys.stderr)
    name = studio.load_adapter(adapter).name if adapter else None
    columns = [None, name] if compare else [name]
    labels = ["base" if c is None else f"adapter {c}" for c in columns]
    histories: list[list[dict]] = [[] for _ in columns]
    prompts = [prompt] if prompt is not None else _ask_forever()
    for text in prompts:
        if text is None:
            break
        if text.strip() == "/clear":
            histories = [[] for _ in columns]
            continue
        conversations = [h + [{"role": "user", "content": text}] for h in histories]
        final = None
        for final in studio.stream(conversations, columns, config.generation):
            pass
        for label, history, conversation, answer in zip(labels, histories, conversations, final):
            prefix = f"[{label}] " if compare else ""
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
