"""Named chat formats, turn by turn, so training ids equal LLaMA-Factory's for the template of the same name.

A format is a list of pieces per turn kind: text with "{content}" where the message goes, and BOS/EOS for the
tokenizer's own special ids. The facts (strings, default system prompts, where the system text goes, stop words,
thought markers, end-of-sequence handling, tool formats) are those of the model families and of LLaMA-Factory
0.9.5's templates of the same name; `qwen` is Qwen1.5's format (its default system prompt differs from Qwen2.5's,
which is LLaMA-Factory's `qwen`). Every format also renders itself as a Jinja chat template
(studio.modeling.chat_templates), so generation and exported models see exactly the prompts training saw.
Rendering lives in studio.modeling.chat_rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from studio.modeling.tool_formats import TOOL_FORMATS

BOS, EOS = ("bos_token",), ("eos_token",)  # tuples so they never equal a text piece
Piece = str | tuple[str]
THOUGHT = ("<think>\n", "\n</think>\n\n")  # what opens and closes a reasoning model's thought, unless said otherwise


@dataclass(frozen=True)
class ChatFormat:
    name: str
    user: tuple[Piece, ...]  # ends with the assistant's header: the prompt the answer follows
    assistant: tuple[Piece, ...]
    system: tuple[Piece, ...]
    function: tuple[Piece, ...]  # an assistant turn that calls tools; "{content}" is the calls' text
    observation: tuple[Piece, ...]  # a tool's result, asked like a user turn
    prefix: tuple[Piece, ...] = ()
    default_system: str = ""
    system_in_user: bool = False  # the system text opens the first user message (Mistral, Gemma)
    efficient_eos: bool = False  # no end token per answer: the next prompt's first label is EOS, one EOS ends all
    tool_format: str | None = "default"  # studio.modeling.tool_formats; None: this format has no tool turns
    stop_words: tuple[str, ...] = ()  # where generation ends besides EOS (the first is EOS when replace_eos)
    replace_eos: bool = False
    reasoning: bool = False  # answers carry a thought (see studio.modeling.chat_rendering.thought_pairs)
    thought_words: tuple[str, str] = THOUGHT
    tool_call_words: tuple[str, str] = ("<tool_call>", "</tool_call>")
    empty_thought_closes_only: bool = False  # GLM-4.7 writes an empty thought as its closing word alone
    thinking: bool = True  # reasoning formats: thoughts kept and trained (model.enable_thinking)

    @property
    def supports_tools(self) -> bool:
        return self.tool_format in TOOL_FORMATS

    @property
    def empty_thought(self) -> str:
        opening, closing = self.thought_words
        return closing if self.empty_thought_closes_only else opening + closing


def _format(
    name: str,
    user: str,
    assistant: tuple[Piece, ...] | None = None,
    function: tuple[Piece, ...] | None = None,
    observation: str | None = None,
    system: tuple[Piece, ...] = ("{content}",),
    **options: Any,
) -> ChatFormat:
    """A format with LLaMA-Factory's defaults for what it leaves out: answers end with EOS (unless efficient_eos),
    tool calls are written like answers, tool results are asked like user turns."""
    assistant = assistant or (("{content}",) if options.get("efficient_eos") else ("{content}", EOS))
    return ChatFormat(
        name,
        (user,),
        assistant,
        system,
        function or assistant,
        (observation or user,),
        **options,
    )


def _headed(name: str, head: str, end: str, stop_words: tuple[str, ...]) -> ChatFormat:
    """Llama 3's and Llama 4's shape: a header per role, an end word per turn, tool results from `ipython`."""
    turn = head + "{{content}}" + end
    return _format(
        name,
        turn.format(role="user") + head.format(role="assistant"),
        assistant=("{content}" + end,),
        system=(turn.format(role="system"),),
        function=("{content}" + end,),
        observation=turn.format(role="ipython") + head.format(role="assistant"),
        tool_format="llama3",
        prefix=(BOS,),
        stop_words=stop_words,
        replace_eos=True,
    )


_IM_USER = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
_IM: dict[str, Any] = {
    "assistant": ("{content}<|im_end|>\n",),
    "system": ("<|im_start|>system\n{content}<|im_end|>\n",),
}
_QWEN_TOOLS: dict[str, Any] = {
    "function": ("{content}<|im_end|>\n",),
    "observation": "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    "stop_words": ("<|im_end|>",),
    "replace_eos": True,
}
_LLAMA3_HEAD = "<|start_header_id|>{role}<|end_header_id|>\n\n"
_LLAMA4_HEAD = "<|header_start|>{role}<|header_end|>\n\n"
_MISTRAL_TOOLS: dict[str, Any] = {
    "function": ("[TOOL_CALLS]{content}", EOS),
    "observation": '[TOOL_RESULTS]{"content": {content}}[/TOOL_RESULTS]',
    "tool_format": "mistral",
    "prefix": (BOS,),
}
_GEMMA: dict[str, Any] = {
    "assistant": ("{content}<end_of_turn>\n",),
    "system": ("{content}\n\n",),
    "observation": "<start_of_turn>tool\n{content}<end_of_turn>\n<start_of_turn>model\n",
    "prefix": (BOS,),
    "stop_words": ("<end_of_turn>",),
    "replace_eos": True,
    "system_in_user": True,
}
_GEMMA_USER = "<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n"
_GLM: dict[str, Any] = {
    "assistant": ("\n{content}",),
    "system": ("<|system|>\n{content}",),
    "function": ("{content}",),
    "observation": "<|observation|>\n{content}<|assistant|>",
    "prefix": ("[gMASK]<sop>",),
    "stop_words": ("<|user|>", "<|observation|>"),
    "efficient_eos": True,
}
_GLM_USER = "<|user|>\n{content}<|assistant|>"
_QWEN3: dict[str, Any] = {**_IM, **_QWEN_TOOLS, "tool_format": "qwen"}
_QWEN3_5: dict[str, Any] = {**_IM, **_QWEN_TOOLS, "tool_format": "qwen3_5"}
_DEEPSEEK3_USER = "<｜User｜>{content}<｜Assistant｜>"
_GPT_OSS_THOUGHT = ("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>")
_GEMMA4_USER = "<|turn>user\n{content}<turn|>\n<|turn>model\n"
_GRANITE_USER = (
    "<|start_of_role|>user<|end_of_role|>{content}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
)

FORMATS = {
    f.name: f
    for f in (
        _format(
            "chatml",
            _IM_USER,
            observation="<|im_start|>tool\n{content}<|im_end|>\n<|im_start|>assistant\n",
            stop_words=("<|im_end|>", "<|im_start|>"),
            replace_eos=True,
            **_IM,
        ),
        _format(
            "qwen", _IM_USER, default_system="You are a helpful assistant.", tool_format="qwen", **_IM, **_QWEN_TOOLS
        ),
        _format(
            "qwen2.5",
            _IM_USER,
            default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            tool_format="qwen",
            **_IM,
            **_QWEN_TOOLS,
        ),
        _format("qwen3", _IM_USER, reasoning=True, **_QWEN3),
        _format("qwen3_nothink", _IM_USER, **_QWEN3),
        # The vision-language families write text as their language models do; a picture's tokens stand in the
        # text where its <image> placeholder was (studio.data.picture_tokens).
        _format(
            "qwen2_vl",
            _IM_USER,
            default_system="You are a helpful assistant.",
            tool_format="qwen",
            **_IM,
            **_QWEN_TOOLS,
        ),
        _format("qwen3_vl", _IM_USER, reasoning=True, **_QWEN3),
        _format("qwen3_vl_nothink", _IM_USER, **_QWEN3),
        _format("qwen3_5", _IM_USER, reasoning=True, **_QWEN3_5),
        _format("qwen3_5_nothink", _IM_USER, **_QWEN3_5),
        _format("qwen3_6", _IM_USER, reasoning=True, **_QWEN3_5),
        _format("yi", _IM_USER, stop_words=("<|im_end|>",), **_IM),
        _format(
            "smollm2",
            _IM_USER,
            default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
            stop_words=("<|im_end|>",),
            **_IM,
        ),
        _format(
            "lfm2",
            _IM_USER,
            function=("{content}<|im_end|>\n",),
            observation="<|im_start|>tool\n<|tool_response_start|>{content}<|tool_response_end|><|im_end|>\n"
            "<|im_start|>assistant\n",
            tool_format="lfm2",
            default_system="You are a helpful AI assistant.",
            stop_words=("<|im_end|>",),
            tool_call_words=("<|tool_call_start|>", "<|tool_call_end|>"),
            replace_eos=True,
            **_IM,
        ),
        _headed("llama3", _LLAMA3_HEAD, "<|eot_id|>", ("<|eot_id|>", "<|eom_id|>")),
        _headed("llama4", _LLAMA4_HEAD, "<|eot|>", ("<|eot|>", "<|eom|>")),
        _format(
            "mistral",
            "[INST] {content}[/INST]",
            assistant=(" {content}", EOS),
            system=("{content}\n\n",),
            function=("[TOOL_CALLS] {content}", EOS),
            observation='[TOOL_RESULTS] {"content": {content}}[/TOOL_RESULTS]',
            tool_format="mistral",
            prefix=(BOS,),
            system_in_user=True,
        ),
        _format(
            "mistral_small",
            "[INST]{content}[/INST]",
            system=("[SYSTEM_PROMPT]{content}[/SYSTEM_PROMPT]",),
            **_MISTRAL_TOOLS,
        ),
        _format(
            "ministral3", "[INST]{content}[/INST]", system=("{content}\n\n",), system_in_user=True, **_MISTRAL_TOOLS
        ),
        _format("gemma", _GEMMA_USER, **_GEMMA),
        _format("gemma3", _GEMMA_USER, **_GEMMA),
        _format(
            "gemma4",
            _GEMMA4_USER,
            assistant=("{content}<turn|>\n",),
            system=("<|turn>system\n<|think|>{content}<turn|>\n",),
            function=("<|tool>{content}<tool|>",),
            observation="<|turn>tool\n{content}<turn|>\n<|turn>model\n",
            tool_format="gemma4",
            prefix=(BOS,),
            stop_words=("<turn|>",),
            default_system="You are a helpful assistant.",
            thought_words=("<|channel>thought\n", "<channel|>"),
            replace_eos=True,
            reasoning=True,
        ),
        _format("glm4", _GLM_USER, tool_format="glm4", **_GLM),
        _format("glm4_moe", _GLM_USER, tool_format="glm4_moe", reasoning=True, **_GLM),
        _format(
            "glm4_7",
            _GLM_USER,
            tool_format="glm4_moe",
            reasoning=True,
            thought_words=("<think>", "</think>"),
            empty_thought_closes_only=True,
            **_GLM,
        ),
        _format("deepseek", "User: {content}\n\nAssistant:", system=("{content}\n\n",), prefix=(BOS,)),
        _format("deepseek3", _DEEPSEEK3_USER, prefix=(BOS,)),
        _format("deepseekr1", _DEEPSEEK3_USER, prefix=(BOS,), reasoning=True),
        _format(
            "phi4",
            "<|im_start|>user<|im_sep|>{content}<|im_end|><|im_start|>assistant<|im_sep|>",
            assistant=("{content}<|im_end|>",),
            system=("<|im_start|>system<|im_sep|>{content}<|im_end|>",),
            stop_words=("<|im_end|>",),
            replace_eos=True,
        ),
        _format(
            "phi4_mini",
            "<|user|>{content}<|end|><|assistant|>",
            assistant=("{content}<|end|>",),
            system=("<|system|>{content}<|end|>",),
            tool_format="phi4_mini",  # the tools text as given, in <|tool|>; calls in the default format
            stop_words=("<|end|>",),
            replace_eos=True,
        ),
        _format(
            "gpt_oss",
            "<|start|>user<|message|>{content}<|end|><|start|>assistant",
            assistant=("{content}",),
            system=("<|start|>system<|message|>{content}<|end|>",),
            default_system="You are ChatGPT, a large language model trained by OpenAI.",
            thought_words=_GPT_OSS_THOUGHT,
            efficient_eos=True,
            reasoning=True,
        ),
        _format(
            "granite4",
            _GRANITE_USER,
            assistant=("{content}<|end_of_text|>\n",),
            system=("<|start_of_role|>system<|end_of_role|>{content}<|end_of_text|>\n",),
            function=("{content}<|end_of_text|>\n",),
            observation="<|start_of_role|>tool<|end_of_role|>{content}<|end_of_text|>\n<|start_of_role|>assistant\n",
            stop_words=("<|end_of_text|>",),
            default_system="You are Granite, developed by IBM. You are a helpful AI assistant.",
        ),
        _format("olmo", "<|user|>\n{content}<|assistant|>\n", prefix=(EOS,)),
        # Plain-text instructions for base models without special tokens.
        _format(
            "alpaca",
            "### Instruction:\n{content}\n\n### Response:\n",
            assistant=("{content}", EOS, "\n\n"),
            default_system="Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n",
        ),
    )
}

# Model folder or hub names (last path part, lower case) and the format their family uses; the first match wins.
# SmolLM2 (the embedded default among them) keeps its own template: LLaMA-Factory's smollm2 adds a full stop to
# the default system prompt the model was trained with.
_FAMILIES = [
    (r"qwen3-vl-.*-thinking", "qwen3_vl"),
    (r"qwen3-vl-", "qwen3_vl_nothink"),  # the instruct models never think
    (r"qwen2(\.5)?-vl-", "qwen2_vl"),  # Qwen2.5-VL writes as Qwen2-VL does (LLaMA-Factory's qwen2_vl)
    (r"qwen3\.6-", "qwen3_6"),
    (r"qwen3\.5-", "qwen3_5"),
    (r"qwen3-.*-instruct-2507", "qwen3_nothink"),  # the 2507 instruct models never think
    (r"qwen3-next-.*-instruct", "qwen3_nothink"),
    (r"qwen3-", "qwen3"),
    (r"qwen2\.5-", "qwen2.5"),
    (r"qwen(1\.5|2)?-", "qwen"),
    (r"(meta-)?llama-3", "llama3"),
    (r"llama-4", "llama4"),
    (r"(mistral|devstral)-small-", "mistral_small"),
    (r"ministral-3-", "ministral3"),
    (r"(mistral-7b|mixtral-8x)", "mistral"),
    (r"gemma-4-", "gemma4"),
    (r"gemma-3-", "gemma3"),
    (r"(code)?gemma-(1\.1-)?\d+b", "gemma"),
    (r"glm-4\.7", "glm4_7"),
    (r"glm-4\.[56]", "glm4_moe"),
    (r"glm-4-", "glm4"),
    (r"deepseek-r1", "deepseekr1"),
    (r"deepseek-v3", "deepseek3"),
    (r"deepseek-(llm|moe|math)-", "deepseek"),
    (r"phi-4-mini", "phi4_mini"),
    (r"phi-4", "phi4"),
    (r"gpt-oss-", "gpt_oss"),
    (r"granite-4", "granite4"),
    (r"lfm2", "lfm2"),
    (r"olmo-", "olmo"),
    (r"yi-", "yi"),
]


def format_for_name(name: str) -> ChatFormat | None:
    last = name.rstrip("/").split("/")[-1].lower()
    return next((FORMATS[f] for pattern, f in _FAMILIES if re.match(pattern, last)), None)
