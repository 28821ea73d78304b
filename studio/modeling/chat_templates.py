"""The chat template a run uses: a named format (studio.modeling.chat_formats) installed as the
tokenizer's Jinja template, or with 'auto' the model family's format, else the tokenizer's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.modeling.chat_formats import BOS, EOS, FORMATS, ChatFormat, Piece, fill, format_for_name, render_text

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
    return (
        f"{{# qlora-studio chat format {fmt.name} #}}"  # names the format, so two with the same text stay apart
        + prefix
        + "{% if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
        "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
        f"{{% if not system %}}{{% set system = {_literal(fmt.default_system)} %}}{{% endif %}}"
        "{% for message in turns %}{% set content = message['content'] %}"
        f"{{% if loop.first and system %}}{first}{{% endif %}}"
        f"{{% if message['role'] == 'user' %}}{{{{ {_expression(fmt.user, 'content')} }}}}"
        f"{{% elif message['role'] == 'assistant' %}}{{{{ {_expression(fmt.assistant, 'content')} }}}}{{% endif %}}"
        "{% endfor %}"
    )


TEMPLATES = {name: to_jinja(fmt) for name, fmt in FORMATS.items()}
_FORMAT_OF_TEMPLATE = {template: FORMATS[name] for name, template in TEMPLATES.items()}


def format_of(tokenizer: PreTrainedTokenizerBase) -> ChatFormat | None:
    """The named format installed on this tokenizer; None when it uses a template of its own."""
    return _FORMAT_OF_TEMPLATE.get(tokenizer.chat_template)


def apply_chat_template_choice(tokenizer: PreTrainedTokenizerBase, choice: str, model_name: str | None = None) -> None:
    """Install the chosen template. 'auto': the format of the model's family (from its name), else
    the named format the tokenizer's own template renders like, else its own template, else ChatML."""
    if choice != "auto":
        tokenizer.chat_template = TEMPLATES[choice]
        return
    fmt = format_for_name(model_name or tokenizer.name_or_path or "") or _same_as_own(tokenizer)
    if fmt is not None:
        tokenizer.chat_template = TEMPLATES[fmt.name]
    elif not tokenizer.chat_template:
        tokenizer.chat_template = TEMPLATES["chatml"]


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
