"""Chat with a GGUF file through llama.cpp itself (studio.modeling.llama_cpp): the answers the file's users get.

A conversation is rendered by the file's own chat template (tokenizer.chat_template in its metadata, as the studio's
export writes it; the studio's ChatML where the file has none), tokenised by llama.cpp and answered token by token
into the same BatchStreamer the engine's panes read (studio.chat.streaming), up to the file's end-of-generation
tokens. The file is one model with nothing to put on it: adapters, tools and pictures are refused by name.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from studio.adapters import AdapterError
from studio.chat.prompts import OWN_TEMPLATE, TemplateInfo
from studio.chat.streaming import Answer, BatchStreamer, StopOnEvent, streamed
from studio.chat.tools import check_tools, has_tool_turns
from studio.errors import StudioError
from studio.modeling import llama_cpp
from studio.modeling.chat_templates import TEMPLATES

if TYPE_CHECKING:
    from llama_cpp import Llama

    from studio.config import GenerationConfig
    from studio.data.formats import Message

CONTEXT_TOKENS = 4096  # llama.cpp's KV cache is sized up front: the file's trained length may be far larger


class GgufChat:
    """One GGUF file loaded by llama.cpp on the CPU, answering conversations one after another."""

    def __init__(self, path: Path, llm: Llama, template: str):
        self.path, self.llm, self.template = path, llm, template
        self._bos, self._eos = self._token_text(llm.token_bos()), self._token_text(llm.token_eos())
        self._lock = threading.Lock()  # llama.cpp's context answers one sequence at a time
        # freed when closed, dropped, or at exit while the interpreter still works (llama-cpp-python's own
        # finaliser fails once the interpreter is shutting down)
        self._free = weakref.finalize(self, llm.close)

    @classmethod
    def open(cls, path: Path) -> GgufChat:
        if not path.is_file():
            raise StudioError("chat.gguf_missing", path=path)
        llm = llama_cpp.open_gguf(path, n_ctx=CONTEXT_TOKENS)
        return cls(path, llm, llm.metadata.get("tokenizer.chat_template") or TEMPLATES["chatml"])

    def close(self) -> None:
        with self._lock:
            self._free()

    def template_info(self) -> TemplateInfo:
        """The template's name where it is one of the studio's formats; it offers no tools or thinking here."""
        name = next((name for name, text in TEMPLATES.items() if text == self.template), OWN_TEMPLATE)
        return TemplateInfo(name, False, False, False)

    def stream(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        stop: threading.Event | None = None,
        every_s: float = 0.25,
        *,
        tools: str | list | None = None,
        pictures: list[list[Any]] | None = None,
    ) -> Generator[list[Answer], None, None]:
        """Each conversation's answer, all answers so far at most every `every_s` seconds, as ChatEngine.stream
        yields them. A reader that stops listening ends the answer at its next token."""
        if any(name is not None for name in adapters):
            raise AdapterError("chat.gguf_no_adapters", path=self.path)
        if check_tools(tools) or any(has_tool_turns(c) for c in conversations) or (pictures and any(pictures)):
            raise StudioError("chat.gguf_plain_chat", path=self.path)
        prompts = [self._prompt(conversation) for conversation in conversations]
        # BatchStreamer asks a tokenizer for its end token and for text: llama.cpp's vocabulary answers both
        streamer = BatchStreamer(cast(Any, _Vocabulary(self.llm)), len(prompts))
        yield from streamed(streamer, partial(self._answer, prompts, generation, streamer), stop, every_s)

    def _prompt(self, messages: list[Message]) -> list[int]:
        """The conversation (its system prompt already set, as ChatEngine.stream does) in the file's template."""
        from transformers.utils.chat_template_utils import render_jinja_template

        chat = [dict(m) for m in messages]
        # as apply_chat_template renders: (texts, generation indices), whatever its annotation says
        rendered, _ = cast(Any, render_jinja_template)(
            [chat], chat_template=self.template, add_generation_prompt=True, bos_token=self._bos, eos_token=self._eos
        )
        # the template writes the BOS it wants; special tokens in the text are read as such, as llama.cpp's chat does
        ids = self.llm.tokenize(rendered[0].encode("utf-8"), add_bos=False, special=True)
        if len(ids) + 1 >= self.llm.n_ctx():
            raise StudioError("chat.gguf_too_long", tokens=len(ids), context=self.llm.n_ctx())
        return ids

    def _answer(
        self, prompts: list[list[int]], generation: GenerationConfig, streamer: BatchStreamer, stopping: StopOnEvent
    ) -> None:
        """The generating thread: the rows one after another, each into its part of the streamer."""
        try:
            with self._lock:
                for row, ids in enumerate(prompts):
                    if stopping.stopped:
                        return
                    self._answer_row(ids, generation, streamer.part([row]), stopping)
        except Exception as error:  # raised to the reader by stream()
            streamer.error = error
        finally:
            streamer.end()

    def _answer_row(self, ids: list[int], generation: GenerationConfig, part: Any, stopping: StopOnEvent) -> None:
        part.put(torch.tensor([ids]))  # the prompt first: the row's clock starts there
        room = self.llm.n_ctx() - len(ids)
        tokens = llama_cpp.sample(
            self.llm,
            ids,
            min(generation.max_new_tokens, room),
            temperature=generation.temperature,
            top_p=generation.top_p,
            top_k=generation.top_k,
            repetition_penalty=generation.repetition_penalty,
            seed=generation.seed,
        )
        for token in tokens:
            if stopping.stopped or llama_cpp.is_end(self.llm, token):
                break
            part.put(torch.tensor([[token]]))
        part.end()

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


class _Vocabulary:
    """The two things BatchStreamer asks of a tokenizer, from llama.cpp's vocabulary."""

    def __init__(self, llm: Llama):
        self.llm, self.eos_token_id, self.pad_token_id = llm, llm.token_eos(), None

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return llama_cpp.text_of(self.llm, ids)
