"""Named chat templates for tokenizers that ship none, or to override the shipped one."""

from __future__ import annotations

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen1.5 chat: ChatML with a default system prompt when the conversation brings none.
_QWEN = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}" + _CHATML
)

_LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Plain-text instruction format for base models without special tokens.
_ALPACA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

TEMPLATES = {"chatml": _CHATML, "qwen": _QWEN, "llama3": _LLAMA3, "alpaca": _ALPACA}


def apply_chat_template_choice(tokenizer, choice: str) -> None:
    """Install the chosen template on the tokenizer; 'auto' keeps its own and falls back to ChatML."""
    if choice == "auto":
        if not tokenizer.chat_template:
            tokenizer.chat_template = _CHATML
        return
    tokenizer.chat_template = TEMPLATES[choice]
