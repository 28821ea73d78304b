"""An OpenAI request as the prompt ids the model answers, built the way Chat builds its own.

Messages are read by the training data's own reader for OpenAI-format datasets (studio.data.formats: an assistant
message's tool_calls become a function_call turn, tool results observation turns), then asked as Chat asks
(studio.chat.prompts): without tools, thinking or tool turns through the tokenizer's chat template, exactly as the
Chat tab's plain prompts; otherwise piece by piece as training encodes them, with the tools (checked as Chat checks
them, studio.chat.tools) on the system turn. The answer is then read by the same template (studio.chat.replies):
its thought, its function calls and its text apart.

A message's image_url parts (studio.openai_api.pictures) become `<image>` placeholders where they stand, and the
pictures go through the loaded vision-language model's ChatPictures as Chat's do: each placeholder expanded into the
picture's vision tokens before encoding, so the prompt's length is what the model sees (and what `usage` counts).
Only the parts place pictures: an `<image>` typed in a message's text stays that text.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.chat.pictures import ChatPictures, Picture, PictureError, check_text
from studio.chat.prompts import Prompting, prompt_ids
from studio.chat.tools import check_tools, has_tool_turns
from studio.data.formats import ASKING_ROLES, Skip, chat_turns, with_system
from studio.data.registry import DatasetSpec
from studio.modeling.vision import IMAGE_PLACEHOLDER
from studio.openai_api.errors import ApiError
from studio.openai_api.pictures import Shown, messages_pictures
from studio.openai_api.schema import ChatMessage, ChatRequest, CompletionRequest, ContentPart

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from studio.data.formats import Message

# an OpenAI-format dataset entry whose rows are requests: the reader maps roles and tool calls as it does for files
_REQUESTS = DatasetSpec(name="request", file_name="request", formatting="openai")
# Where an image_url part stood, and an `<image>` a client typed, while the pictures are expanded: in an API request
# the parts place the pictures, so a typed `<image>` is text (as Chat keeps a system turn's). Random, so no text
# holds one by chance or on purpose.
_PART = f"<image part {secrets.token_hex(8)}>"
_TYPED = f"<image typed {secrets.token_hex(8)}>"


@dataclass
class Prompt:
    ids: list[int]
    prompting: Prompting | None = None  # asked with tools or thinking: the answer is read by its template
    # the pictures' model inputs (pixel_values, image_grid_thw, mm_token_type_ids), on the CPU; empty: none
    pixels: dict[str, torch.Tensor] = field(default_factory=dict)


def chat_prompt(
    tokenizer: PreTrainedTokenizerBase,
    request: ChatRequest,
    seeing: ChatPictures | None = None,
    shown: list[Shown] | None = None,
) -> Prompt:
    """The request's prompt; `seeing`: how the loaded model sees pictures (None: a text model, which is refused any);
    `shown`: the request's image_url parts as messages_pictures read them (the endpoint has; None: read here)."""
    shown = messages_pictures(request.messages) if shown is None else shown
    messages: list[Message] = _conversation(request.messages)
    pixels: dict[str, torch.Tensor] = {}
    if seeing is not None:
        check_text([messages])  # the model's own picture words typed in a message would be pictures without pixels
        if shown:
            images: list[Picture] = [picture.opened(seeing.pixels) for picture in shown]
            (expanded,), pixels = seeing.expand([_placed(messages)], [images])
            messages = [_with_text(message, _TYPED, IMAGE_PLACEHOLDER) for message in expanded]
    elif shown:
        raise PictureError("chat.pictures_need_vision_model", model=request.model)
    tools = check_tools(_offered_tools(request))
    thinking = _thinking(request)
    if not tools and thinking is None and not has_tool_turns(messages):  # as the Chat tab asks a plain question
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt = Prompt(tokenizer.encode(str(text), add_special_tokens=False))
    else:
        prompting = Prompting(tools, thinking)
        prompt = Prompt(prompt_ids(tokenizer, messages, prompting), prompting)
    if pixels and seeing is not None:
        import torch

        prompt.pixels = pixels | {"mm_token_type_ids": seeing.token_types(torch.tensor([prompt.ids]))}
    return prompt


def completion_prompt(tokenizer: PreTrainedTokenizerBase, request: CompletionRequest) -> Prompt:
    """A raw prompt, one per request: the tokenizer adds its BOS as it would to any plain text."""
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise ApiError("openai.one_prompt", param="prompt", count=len(prompts))
    return Prompt(tokenizer.encode(prompts[0], add_special_tokens=True))


def _offered_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """The tools the prompt describes: none when the client says tool_choice 'none'."""
    choice = request.tool_choice
    if choice not in (None, "auto", "none"):
        raise ApiError("openai.tool_choice_unsupported", param="tool_choice", choice=str(choice))
    if choice == "none" or not request.tools:
        return []
    return [tool.model_dump(exclude_none=True) for tool in request.tools]


def _thinking(request: ChatRequest) -> bool | None:
    """A reasoning template's thinking switch: vLLM's chat_template_kwargs.enable_thinking, or OpenAI's
    reasoning_effort ('none' off, any other effort on); None: as the model was loaded."""
    switch = (request.chat_template_kwargs or {}).get("enable_thinking")
    if switch is not None:
        return bool(switch)
    return None if request.reasoning_effort is None else request.reasoning_effort != "none"


def _conversation(messages: list[ChatMessage]) -> list[Message]:
    """The request's messages as training reads an OpenAI-format record (the system prompt on the first message)."""
    raw = [_plain(message, first=index == 0) for index, message in enumerate(messages)]
    try:
        system, turns = chat_turns(_REQUESTS, {"messages": raw})
    except Skip as refused:
        raise ApiError("openai.messages_refused", param="messages", reason=refused.reason) from None
    if not turns or turns[-1]["role"] not in ASKING_ROLES:
        raise ApiError("openai.last_message_not_asking", param="messages")
    return with_system(turns, system, "")


def _plain(message: ChatMessage, first: bool) -> dict[str, Any]:
    """One message as a dataset row holds it: text content, developer as system (only first, as templates put it)."""
    role = "system" if message.role == "developer" else message.role
    if role == "system" and not first:
        raise ApiError("openai.system_not_first", param="messages")
    plain: dict[str, Any] = {"role": role, "content": _text(message.content)}
    if message.tool_calls:
        plain["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    return plain


def _text(content: str | list[ContentPart] | None) -> str:
    """The message's text, a marker where each image_url part stands (an `<image>` placeholder once `_placed`)."""
    if content is None or isinstance(content, str):
        return content or ""
    kinds = {part.type for part in content} - {"text", "image_url"}
    if kinds:
        raise ApiError("openai.text_only", param="messages", kinds=", ".join(sorted(kinds)))
    return "".join(_PART if part.type == "image_url" else part.text or "" for part in content)


def _placed(messages: list[Message]) -> list[Message]:
    """The messages as ChatPictures expands them: an `<image>` where each image_url part stood, typed ones hidden."""
    return [
        _with_text(_with_text(message, IMAGE_PLACEHOLDER, _TYPED), _PART, IMAGE_PLACEHOLDER) for message in messages
    ]


def _with_text(message: Message, old: str, new: str) -> Message:
    return dict(message, content=message["content"].replace(old, new)) if old in message["content"] else message
