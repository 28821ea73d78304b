"""An Ollama Modelfile next to the GGUF: the prompt format the model was trained with, its stops and sampling.

When the tokenizer carries one of the studio's named chat formats, the format is rendered as an
Ollama (Go text/template) TEMPLATE piece by piece, so Ollama builds exactly the prompts training
saw. A model with a template of its own gets no TEMPLATE line: Ollama then reads the Jinja
template stored in the GGUF (`tokenizer.chat_template`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.config import GenerationConfig
from studio.modeling.chat_formats import BOS, EOS, ChatFormat, Piece
from studio.modeling.chat_templates import format_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def modelfile_text(gguf_name: str, tokenizer: PreTrainedTokenizerBase, generation: GenerationConfig) -> str:
    fmt = format_of(tokenizer)
    lines = [
        f"# Ollama Modelfile written by QLoRA Studio for {gguf_name}.",
        "#   ollama create my-model -f Modelfile && ollama run my-model",
        f"# llama.cpp reads the chat template stored in the file:  llama-cli -m {gguf_name} -cnv",
        f"FROM ./{gguf_name}",
    ]
    if fmt is None:
        lines.append("# No TEMPLATE: the model's own chat template is stored in the GGUF (tokenizer.chat_template).")
    else:
        lines.append(f'TEMPLATE """{go_template(fmt, tokenizer)}"""')
    system = generation.system_prompt or (fmt.default_system if fmt else "")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stop_words(fmt, tokenizer)]
    lines += [
        f"PARAMETER temperature {generation.temperature:g}",
        f"PARAMETER top_p {generation.top_p:g}",
        f"PARAMETER top_k {generation.top_k}",
        f"PARAMETER repeat_penalty {generation.repetition_penalty:g}",
    ]
    return "\n".join(lines) + "\n"


def write_modelfile(
    out_dir: Path, gguf_name: str, tokenizer: PreTrainedTokenizerBase, generation: GenerationConfig
) -> Path:
    path = out_dir / "Modelfile"
    path.write_text(modelfile_text(gguf_name, tokenizer, generation), encoding="utf-8")
    return path


def go_template(fmt: ChatFormat, tokenizer: PreTrainedTokenizerBase) -> str:
    """The chat format as an Ollama template: the system text, then each user and assistant turn."""
    system = _text(fmt.system, "{{ $system }}", tokenizer)
    if fmt.system_in_user:  # the system text opens the first user message, once
        before, after = _split_at_content(fmt.user, tokenizer)
        user = before + "{{ if $system }}" + system + '{{ $system = "" }}{{ end }}{{ .Content }}' + after
        head = ""
    else:
        user = _text(fmt.user, "{{ .Content }}", tokenizer)
        head = "{{ if $system }}" + system + "{{ end }}"
    assistant = _text(fmt.assistant, "{{ .Content }}", tokenizer)
    return (
        "{{- $system := .System }}"
        + _text(fmt.prefix, "", tokenizer)
        + head
        + '{{- range .Messages }}{{ if eq .Role "user" }}'
        + user
        + '{{ else if eq .Role "assistant" }}'
        + assistant
        + "{{ end }}{{ end }}"
    )


def stop_words(fmt: ChatFormat | None, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Where an answer ends: the end-of-sequence token and the format's end-of-turn marker."""
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    if fmt is not None:
        _, after = _split_at_content(fmt.assistant, tokenizer)
        marker = after.strip()
        if marker.startswith("<") and marker not in stops:
            stops.append(marker)
    return stops


def _text(pieces: tuple[Piece, ...], content: str, tokenizer: PreTrainedTokenizerBase) -> str:
    specials = {BOS: "" if _adds_bos(tokenizer) else (tokenizer.bos_token or ""), EOS: tokenizer.eos_token or ""}
    return "".join(specials[p] if isinstance(p, tuple) else p.replace("{content}", content) for p in pieces)


def _split_at_content(pieces: tuple[Piece, ...], tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    before, _, after = _text(pieces, "\0", tokenizer).partition("\0")
    return before, after


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """llama.cpp and Ollama put BOS in front themselves when the tokenizer does; the template must not repeat it."""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
