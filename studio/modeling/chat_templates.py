"""The chat template a run uses: a named format (studio.modeling.chat_formats) installed as the
tokenizer's Jinja template, or with 'auto' the model family's format, else the tokenizer's own.

A reasoning format's template follows the run's thinking setting (model.enable_thinking), which a caller may
override per call with `enable_thinking=` as Qwen3's own template allows: off, answers lose their thoughts and the
generation prompt ends with an empty thought."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING

from studio.modeling.chat_formats import BOS, EOS, FORMATS, ChatFormat, Piece, format_for_name
from studio.modeling.chat_rendering import fill, render_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _expression(pieces: tuple[Piece, ...], variable: str) -> str:
    """A Jinja expression for pieces whose {content} is `variable`."""
    parts = []
    for piece in fill(pieces, "\0"):
        if piece == BOS:
            parts.append("(bos_token or '')")
        elif piece == EOS:
            parts.append("(eos_token or '')")
        elif isinstance(piece, str):
            texts = piece.split("\0")
            for index, text in enumerate(texts):
                parts += ([variable] if index else []) + ([_literal(text)] if text else [])
    return " + ".join(parts) or "''"


def to_jinja(fmt: ChatFormat) -> str:
    """The format as a chat template: the prompt already ends with the assistant's header."""
    system = _expression(fmt.system, "system")
    first = f"{{% set content = {system} + content %}}" if fmt.system_in_user else f"{{{{ {system} }}}}"
    prefix = f"{{{{ {_expression(fmt.prefix, '')} }}}}" if fmt.prefix else ""
    variant = "" if not fmt.reasoning else " thinking" if fmt.thinking else " not thinking"
    return (
        f"{{# qlora-studio chat format {fmt.name}{variant} #}}"  # names the format: two with the same text stay apart
        + prefix
        + "{% if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
        "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
        f"{{% if not system %}}{{% set system = {_literal(fmt.default_system)} %}}{{% endif %}}"
        + _thinking_setting(fmt)
        + "{% for message in turns %}{% set content = message['content'] %}"
        f"{{% if loop.first and system %}}{first}{{% endif %}}"
        f"{{% if message['role'] == 'user' %}}{{{{ {_expression(fmt.user, 'content')} }}}}"
        f"{{% elif message['role'] == 'assistant' %}}{_thoughtless(fmt)}"
        f"{{{{ {_expression(fmt.assistant, 'content')} }}}}{{% endif %}}"
        "{% endfor %}" + _empty_thought(fmt)
    )


def _thinking_setting(fmt: ChatFormat) -> str:
    if not fmt.reasoning:
        return ""
    default = "true" if fmt.thinking else "false"
    return f"{{% set thinking = enable_thinking if enable_thinking is defined else {default} %}}"


def _thoughtless(fmt: ChatFormat) -> str:
    """Thinking off: an answer's thought removed (what comes after its closing word, leading line breaks dropped)."""
    if not fmt.reasoning:
        return ""
    closing = _literal(fmt.thought_words[1])
    after = f"content.split({closing})[-1].lstrip('\\n')"
    return f"{{% if not thinking and {closing} in content %}}{{% set content = {after} %}}{{% endif %}}"


def _empty_thought(fmt: ChatFormat) -> str:
    if not fmt.reasoning:
        return ""
    asked = "add_generation_prompt and not thinking and turns and turns[-1]['role'] == 'user'"
    return f"{{% if {asked} %}}{{{{ {_literal(fmt.empty_thought)} }}}}{{% endif %}}"


@functools.cache
def template_of(fmt: ChatFormat) -> str:
    return to_jinja(fmt)


def variants(fmt: ChatFormat) -> list[ChatFormat]:
    """The format as each thinking setting installs it (one for a format that does not think)."""
    return [replace(fmt, thinking=on) for on in (True, False)] if fmt.reasoning else [fmt]


TEMPLATES = {name: template_of(fmt) for name, fmt in FORMATS.items()}  # as installed with thinking on
_FORMAT_OF_TEMPLATE = {template_of(v): v for fmt in FORMATS.values() for v in variants(fmt)}


def format_of(tokenizer: PreTrainedTokenizerBase) -> ChatFormat | None:
    """The named format installed on this tokenizer; None when it uses a template of its own."""
    return _FORMAT_OF_TEMPLATE.get(tokenizer.chat_template)


def apply_chat_template_choice(
    tokenizer: PreTrainedTokenizerBase, choice: str, model_name: str | None = None, thinking: bool = True
) -> None:
    """Install the chosen template. 'auto': the format of the model's family (from its name), else
    the named format the tokenizer's own template renders like, else its own template, else ChatML."""
    fmt = FORMATS[choice] if choice != "auto" else format_for_name(model_name or tokenizer.name_or_path or "")
    fmt = fmt or (_vision_format(tokenizer.name_or_path) or _same_as_own(tokenizer) if choice == "auto" else None)
    if fmt is not None:
        tokenizer.chat_template = template_of(replace(fmt, thinking=thinking) if fmt.reasoning else fmt)
    elif not tokenizer.chat_template:
        tokenizer.chat_template = TEMPLATES["chatml"]


def stop_ids(model: object, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The tokens that end an answer: the model's generation config's end tokens, the tokenizer's, and the stop
    words of the named format installed on it that are single tokens there (Gemma's <end_of_turn>, Llama 3's
    <|eot_id|>, ...)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured]) | {tokenizer.eos_token_id}
    fmt = format_of(tokenizer)
    vocabulary = tokenizer.get_vocab() if fmt and fmt.stop_words else {}
    ids |= {vocabulary[word] for word in (fmt.stop_words if fmt else ()) if word in vocabulary}
    return {i for i in ids if i is not None}


# A vision-language model in a folder of any name, by its config's model_type; Qwen3-VL's instruct and thinking
# models share one model_type, so they keep their own templates.
_VISION_FORMATS = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_vl"}


def _vision_format(path: str | None) -> ChatFormat | None:
    from studio.modeling.vision import vision_family

    family = vision_family(path) if path else None
    return FORMATS[_VISION_FORMATS[family]] if family in _VISION_FORMATS else None


_PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
        {"role": "assistant", "content": "D"},
    ],
]


def _same_as_own(tokenizer: PreTrainedTokenizerBase) -> ChatFormat | None:
    if not isinstance(tokenizer.chat_template, str):
        return None
    try:
        own = [tokenizer.apply_chat_template(p, tokenize=False) for p in _PROBES]
    except Exception:  # a template that cannot render the probes matches no format
        return None
    for fmt in FORMATS.values():
        if own == [render_text(fmt, p, tokenizer.bos_token, tokenizer.eos_token) for p in _PROBES]:
            return fmt
    return None
