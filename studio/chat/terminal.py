"""`qlora-studio chat`: ask once with --prompt, or talk in a loop; --compare answers with the base model beside the
adapter(s); several --adapter answer side by side (base / SFT / SFT+DPO)."""

from __future__ import annotations

import sys

from studio.adapters import read_adapter
from studio.config import RunConfig
from studio.errors import StudioError


def run_chat(
    studio, config: RunConfig, adapter: str | list[str] | None, compare: bool, prompt: str | None, out=print
) -> int:
    """Chat through `studio` (studio.api.Studio), the same front door the web UI uses."""
    adapters = [adapter] if isinstance(adapter, str) else list(adapter or [])
    if compare and not adapters:
        raise StudioError("--compare needs --adapter PATH (the adapter to compare with the base model).")
    for path in adapters:
        read_adapter(path)  # a bad folder is refused before a minute of model loading
    out(
        studio.load_model(config.model, config.quantization, progress=lambda m: out(m, file=sys.stderr)),
        file=sys.stderr,
    )
    names = [studio.load_adapter(path).name for path in adapters] or [None]
    columns = ([None] if compare else []) + names
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
