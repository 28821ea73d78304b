"""Chat's engine for a GGUF file (a model name ending in .gguf, studio.chat.engines): llama.cpp itself answers
(studio.modeling.llama_cpp), so Chat shows the answers the file's users get.

A conversation is rendered by the file's own chat template (tokenizer.chat_template in its metadata, as the studio's
export writes it; the studio's ChatML where the file has none), tokenised by llama.cpp and answered token by token
into the same BatchStreamer the engines' panes read (studio.chat.streaming), up to the file's end-of-generation
tokens. The file is one merged model with nothing to put on it: it answers in Chat (and `qlora-studio chat`) alone,
as the base; adapters, tools, pictures and whatever reaches into a model (the OpenAI endpoint, combinations) are
refused by name.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from studio.adapters import AdapterError, AdapterInfo, read_adapter
from studio.chat.engine_base import EngineBase, EngineError
from studio.chat.memory import read_memory, release_memory
from studio.chat.prompts import OWN_TEMPLATE, TemplateInfo, template_refusals, with_system
from studio.chat.streaming import Answer, BatchStreamer, StopOnEvent, streamed
from studio.chat.tools import check_tools, has_tool_turns
from studio.errors import StudioError
from studio.locales import say
from studio.modeling import llama_cpp
from studio.modeling.chat_templates import TEMPLATES

if TYPE_CHECKING:
    from llama_cpp import Llama

    from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
    from studio.config.training import Precision
    from studio.data.formats import Message
    from studio.locales import Message as Said

CONTEXT_TOKENS = 4096  # llama.cpp's KV cache is sized up front: the file's trained length may be far larger


class GgufEngine(EngineBase["GgufChat"]):
    """The engine whose model is one GGUF file in llama.cpp (`model`: GgufChat); its rows answer one after another."""

    base_only = True

    def _load(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,  # the file's own: llama.cpp reads its tensor types
        progress: Callable[[Said], None],
        precision: Precision,
        cutoff_len: int | None,
    ) -> Said:
        path = Path(model.name_or_path)
        before, started = read_memory(), time.time()
        chat = GgufChat.open(path)
        self.model, self.tokenizer, self.model_name = chat, chat.vocabulary, str(path)
        seconds, memory = time.time() - started, read_memory().minus(before)
        return say("chat.gguf_loaded", name=path.name, seconds=seconds, memory=memory)

    def _unload(self) -> Said:
        before = read_memory()
        chat, self.model, self.tokenizer = self._require_model(), None, None
        chat.close()
        release_memory()
        return say("chat.unloaded", name=self.model_name, memory=read_memory().minus(before))

    def load_adapter(self, path: str, name: str | None = None) -> AdapterInfo:
        read_adapter(path, name)  # a folder that is no adapter is refused as on any engine
        with self._changing():
            self._require_model()
            raise AdapterError("chat.gguf_no_adapters", path=self.model_name)  # a GGUF file is a merged model

    def unload_adapter(self, name: str) -> None:
        with self._changing():
            self._popped_adapter(name)  # none is ever loaded: refused by name

    def combine(
        self, name: str, weights: dict[str, float], combination_type: str = "linear", density: float | None = None
    ) -> AdapterInfo:
        raise self._chat_only()

    def selected(self, adapter: str | None) -> contextlib.AbstractContextManager[tuple[Any, Any]]:
        raise self._chat_only()  # llama.cpp has no transformers model to hand over

    def _chat_only(self) -> EngineError:
        self._require_model()
        # the file's name alone: the OpenAI endpoint sends this to remote clients, who need not see the server's paths
        return EngineError("chat.gguf_chat_only", name=Path(self.model_name or "").name)

    def template(self) -> TemplateInfo:
        return self._require_model().template_info()

    def stream(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        stop: threading.Event | None = None,
        every_s: float = 0.25,
        *,
        tools: str | list | None = None,
        thinking: bool | None = None,  # the file's template offers no switch here (template: reasoning False)
        pictures: list[list[Any]] | None = None,
    ) -> Generator[list[Answer], None, None]:
        """Each conversation's answer, all answers so far at most every `every_s` seconds, as ChatEngine.stream
        yields them. A reader that stops listening ends the answer at its next token."""
        chat = self._require_model()
        if any(name is not None for name in adapters):
            raise AdapterError("chat.gguf_no_adapters", path=chat.path)
        if check_tools(tools) or any(has_tool_turns(c) for c in conversations) or (pictures and any(pictures)):
            raise StudioError("chat.gguf_plain_chat", path=chat.path)
        # BatchStreamer asks a tokenizer for its end token and for text: llama.cpp's vocabulary answers both
        streamer = BatchStreamer(cast(Any, chat.vocabulary), len(conversations))
        yield from streamed(streamer, partial(self._generate, conversations, generation, streamer), stop, every_s)

    def _generate(
        self,
        conversations: list[list[Message]],
        generation: GenerationConfig,
        streamer: BatchStreamer,
        stopping: StopOnEvent,
    ) -> None:
        """The generating thread: the prompts tokenised and the rows answered one after another, each into its part
        of the streamer, all while the engine is held: an unload frees llama.cpp's model, which tokenises too."""

        def answer(chat: GgufChat) -> None:
            prompts = [chat.prompt(with_system(c, generation.system_prompt)) for c in conversations]
            chat.vocabulary.forget()
            for row, ids in enumerate(prompts):
                if stopping.stopped:
                    return
                chat.answer_row(ids, generation, streamer.part([row]), stopping)

        self._generating(streamer, stopping, [None] * len(conversations), answer)


GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file


def check_gguf(path: Path) -> None:
    """Refuse, before anything is unloaded, a path that is no file, a file that does not begin as a GGUF file does
    (renamed, or a download cut short at its start), or a machine without llama-cpp-python (its message says what
    to install); what llama.cpp makes of the rest of the file is said when it opens it."""
    if not path.is_file():
        raise StudioError("chat.gguf_missing", path=path)
    with path.open("rb") as file:
        if file.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise StudioError("chat.gguf_not_gguf", name=path.name)
    llama_cpp.check_installed()


class GgufChat:
    """One GGUF file loaded by llama.cpp on the CPU; its engine holds it while it answers or closes."""

    def __init__(self, path: Path, llm: Llama, template: str):
        self.path, self.llm, self.template = path, llm, template
        self.vocabulary = _Vocabulary(llm)
        self._bos, self._eos = self._token_text(llm.token_bos()), self._token_text(llm.token_eos())
        # freed when closed, dropped, or at exit while the interpreter still works (llama-cpp-python's own
        # finaliser fails once the interpreter is shutting down); the vocabulary closed first, since a reader's
        # daemon thread may still decode then. The finaliser holds both, never this object, or it would never run
        self._free = weakref.finalize(self, _free_model, self.vocabulary, llm)

    @classmethod
    def open(cls, path: Path) -> GgufChat:
        check_gguf(path)
        llm = llama_cpp.open_gguf(path, n_ctx=CONTEXT_TOKENS)
        return cls(path, llm, llm.metadata.get("tokenizer.chat_template") or TEMPLATES["chatml"])

    def close(self) -> None:
        """Free llama.cpp's model. A reader may still decode an answer's last tokens after the engine let go (the
        streamer's reader runs on its own): the vocabulary is told first, under its lock, so it never reads freed
        memory."""
        self._free()

    def template_info(self) -> TemplateInfo:
        """The template's name where it is one of the studio's formats; it offers no tools or thinking here."""
        name = next((name for name, text in TEMPLATES.items() if text == self.template), OWN_TEMPLATE)
        return TemplateInfo(name, False, False, False)

    def prompt(self, messages: list[Message]) -> list[int]:
        """The conversation (its system prompt already set, as every engine sets it) in the file's template."""
        from transformers.utils.chat_template_utils import render_jinja_template

        chat = [dict(m) for m in messages]
        # as apply_chat_template renders: (texts, generation indices), whatever its annotation says; the file's own
        # template may refuse the conversation (Gemma's takes no system turn), which the user can change
        with template_refusals():
            rendered, _ = cast(Any, render_jinja_template)(
                [chat],
                chat_template=self.template,
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        # the template writes the BOS it wants; special tokens in the text are read as such, as llama.cpp's chat does
        ids = self.vocabulary.tokenize(rendered[0])
        if len(ids) + 1 >= self.llm.n_ctx():
            raise StudioError("chat.gguf_too_long", tokens=len(ids), context=self.llm.n_ctx())
        return ids

    def answer_row(self, ids: list[int], generation: GenerationConfig, part: Any, stopping: StopOnEvent) -> None:
        """One row's answer into its part of the streamer, up to an end token, the Stop or the context's end."""
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
        answered: list[int] = []
        try:
            for token in tokens:
                if stopping.stopped or llama_cpp.is_end(self.llm, token):
                    break
                part.put(torch.tensor([[token]]))
                answered.append(token)
        finally:  # failed or not, before the engine lets go: the reader's last decode may come after an unload
            self.vocabulary.remember(answered)
        part.end()

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


def _free_model(vocabulary: _Vocabulary, llm: Llama) -> None:
    """GgufChat's finaliser: the vocabulary closed (a decode under way finishes first), then llama.cpp's model."""
    vocabulary.close()
    llm.close()


class _Vocabulary:
    """The two things BatchStreamer asks of a tokenizer, from llama.cpp's vocabulary, and the prompt's tokens.

    The streamer's reader decodes on its own thread, and its last decode may come after the engine let go and an
    unload freed the model (llama.cpp would then read freed memory and end the process). So reads and the close
    take one lock, and each row's answer is remembered, token by token, before the engine lets go, however the row
    ended: after the close a row's text, or any part of it the reader saw, still reads as it did; anything else is
    refused as an answer whose model changed.
    """

    def __init__(self, llm: Llama):
        self.llm, self.eos_token_id, self.pad_token_id = llm, llm.token_eos(), None
        self._lock, self._closed = threading.Lock(), False
        # the latest answer's rows (GgufEngine resets them): each one's tokens, their pieces and its whole text
        self._rows: list[tuple[tuple[int, ...], list[bytes], str]] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        with self._lock:
            if not self._closed:
                return llama_cpp.text_of(self.llm, ids)
            if not ids:
                return ""
            for tokens, pieces, text in self._rows:
                if tokens[: len(ids)] == tuple(ids):
                    # llama.cpp's detokenize joins the tokens' pieces: a part of the row reads as it did
                    return text if len(ids) == len(tokens) else _text(b"".join(pieces[: len(ids)]))
        raise EngineError("chat.model_changed")

    def tokenize(self, text: str) -> list[int]:
        with self._lock:
            if self._closed:
                raise EngineError("chat.model_changed")
            return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def remember(self, ids: list[int]) -> None:
        """A row's tokens, when it ends or fails: its text, and each part of it, stay readable once the model is
        freed. Called while the engine holds the model."""
        with self._lock:
            if self._closed:  # never, while the engine holds the model; nothing to read it from otherwise
                return
            pieces = [self.llm.detokenize([token], special=False) for token in ids]
            self._rows.append((tuple(ids), pieces, llama_cpp.text_of(self.llm, ids)))

    def forget(self) -> None:
        """A new answer begins: the last one's rows are no longer read after a close."""
        with self._lock:
            self._rows.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True


def _text(answer: bytes) -> str:
    return answer.decode("utf-8", errors="replace")
