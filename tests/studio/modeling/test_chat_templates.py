"""Named formats as Jinja templates and 'auto' picking one from the model name or the tokenizer's own template."""

import copy

import pytest

from studio.modeling.chat_formats import FORMATS, format_for_name
from studio.modeling.chat_rendering import render_text
from studio.modeling.chat_templates import TEMPLATES, apply_chat_template_choice, format_of

CONVERSATIONS = [
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "喵～ 🐾"}],
    [
        {"role": "system", "content": "Be 'brief'."},
        {"role": "user", "content": "A\\nB"},
        {"role": "assistant", "content": "\nC"},
        {"role": "user", "content": "D"},
        {"role": "assistant", "content": " E"},
    ],
    [{"role": "user", "content": "只问不答"}],
]


@pytest.fixture
def tokenizer(tiny_tokenizer):
    copied = copy.deepcopy(tiny_tokenizer)
    copied.bos_token = "<|endoftext|>"  # so formats that open with BOS show it
    return copied


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_template_renders_what_training_encodes(tokenizer, name):
    apply_chat_template_choice(tokenizer, name)
    assert format_of(tokenizer) == FORMATS[name]
    for messages in CONVERSATIONS:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rendered == render_text(FORMATS[name], messages, tokenizer.bos_token, tokenizer.eos_token)


def test_default_system_prompts():
    no_system = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert render_text(FORMATS["qwen"], no_system, None, None).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>"
    )
    assert render_text(FORMATS["qwen2.5"], no_system, None, None).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>"
    )
    assert render_text(FORMATS["chatml"], no_system, None, None).startswith("<|im_start|>user")
    with_system = [{"role": "system", "content": "S"}] + no_system
    assert render_text(FORMATS["mistral"], with_system, "<s>", "</s>") == "<s>[INST] S\n\nhi[/INST] yo</s>"


@pytest.mark.parametrize(
    "model, expected",
    [
        ("Qwen/Qwen1.5-1.8B-Chat", "qwen"),
        ("Qwen/Qwen2-7B-Instruct", "qwen"),
        ("/models/Qwen2.5-0.5B-Instruct", "qwen2.5"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("meta-llama/Llama-3.2-1B-Instruct", "llama3"),
        ("mistralai/Mistral-7B-Instruct-v0.2", "mistral"),
        ("google/gemma-7b-it", "gemma"),
        ("THUDM/glm-4-9b-chat", "glm4"),
        ("deepseek-ai/deepseek-llm-7b-chat", "deepseek"),
        ("01-ai/Yi-1.5-9B-Chat", "yi"),
        ("google/gemma-2-9b-it", None),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("Qwen/Qwen3-4B-Instruct-2507", "qwen3_nothink"),
        ("Qwen/Qwen3.5-9B", "qwen3_5"),
        ("Qwen/Qwen3.6-35B-A3B", "qwen3_6"),
        ("google/gemma-3-4b-it", "gemma3"),
        ("google/gemma-4-E4B-it", "gemma4"),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4"),
        ("microsoft/phi-4", "phi4"),
        ("microsoft/Phi-4-mini-instruct", "phi4_mini"),
        ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "mistral_small"),
        ("mistralai/Ministral-3-8B-Instruct-2512", "ministral3"),
        ("deepseek-ai/DeepSeek-V3", "deepseek3"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseekr1"),
        ("zai-org/GLM-4.5-Air", "glm4_moe"),
        ("zai-org/GLM-4.7", "glm4_7"),
        ("openai/gpt-oss-20b", "gpt_oss"),
        ("ibm-granite/granite-4.0-h-tiny", "granite4"),
        ("LiquidAI/LFM2-1.2B", "lfm2"),
        ("allenai/OLMo-7B-Instruct", "olmo"),
        ("/tmp/tiny-qwen2", None),
        ("embedded:SmolLM2-135M-Instruct", None),  # its own template (LF's smollm2 adds a full stop)
        ("HuggingFaceTB/SmolLM2-360M-Instruct", None),
    ],
)
def test_auto_knows_the_families(model, expected):
    found = format_for_name(model)
    assert (found.name if found else None) == expected


def test_auto_installs_the_family_format(tokenizer):
    apply_chat_template_choice(tokenizer, "auto", "Qwen/Qwen2.5-7B-Instruct")
    assert tokenizer.chat_template == TEMPLATES["qwen2.5"]


def test_auto_recognises_an_own_template_that_renders_like_a_format(tokenizer):
    # A ChatML template with Qwen1.5's default system prompt, written its own way.
    tokenizer.chat_template = (
        "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    apply_chat_template_choice(tokenizer, "auto", "/models/my-finetune")
    assert format_of(tokenizer) is FORMATS["qwen"]


def test_auto_keeps_an_unknown_own_template(tokenizer):
    own = "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    tokenizer.chat_template = own
    apply_chat_template_choice(tokenizer, "auto", "/models/something")
    assert tokenizer.chat_template == own and format_of(tokenizer) is None
    tokenizer.chat_template = None
    apply_chat_template_choice(tokenizer, "auto", "/models/something")
    assert tokenizer.chat_template == TEMPLATES["chatml"]
