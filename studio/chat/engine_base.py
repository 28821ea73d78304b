"""What every chat engine shares (studio.chat.engines chooses one): one model in memory at a time, held by one lock.

The HF engine (studio.chat.engine), vLLM's (studio.chat.vllm_engine) and llama.cpp's for a GGUF file
(studio.chat.gguf_engine) each load, stream and hold adapters their own way; here is what they do alike: the lock a
model change or an answer holds, `load` and `unload` around the engine's own, the refusals every engine says the
same way (busy, nothing loaded, an adapter not loaded, the model changed under a waiting answer), the one-answer
`answer` built on `stream`, and what an engine that lacks something answers when asked (no combinations, no
pictures, adapters apply).
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from studio.adapters import AdapterError, AdapterInfo
from studio.errors import StudioError
from studio.locales import say

if TYPE_CHECKING:
    from studio.chat.pictures import Picture
    from studio.chat.prompts import TemplateInfo
    from studio.chat.streaming import Answer, BatchStreamer, StopOnEvent
    from studio.combinations import Combination
    from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
    from studio.config.training import Precision
    from studio.data.formats import Message
    from studio.locales import Message as Said  # a chat Message is a turn of a conversation
    from studio.modeling.compute import ComputePlan

ModelT = TypeVar("ModelT")  # what an engine holds loaded: a transformers model, vLLM's, llama.cpp's


class EngineError(StudioError):
    """Chat asked of an engine that is not ready (no model loaded)."""


class EngineBase(ABC, Generic[ModelT]):
    """One model (`model`, None: nothing loaded) and the adapters loaded onto it, by name."""

    # the loaded model answers alone, as the base: adapters do not apply to it (a GGUF file, a merged model)
    base_only: ClassVar[bool] = False

    def __init__(self) -> None:
        self.model: ModelT | None = None
        self.tokenizer: Any = None  # what the engine's tokens are decoded with; the streamers read it
        self.model_name: str | None = None
        self.plan: ComputePlan | None = None  # how the studio's loader loaded the model (None: not by it)
        self.adapters: dict[str, AdapterInfo] = {}
        # one generation or one model change at a time; taken and let go by the same thread within one call,
        # never held across a yield (see ChatEngine.stream); reentrant because loading a model unloads the last one
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    @property
    def combinations(self) -> dict[str, Combination]:
        """The weighted combinations loaded, by name: none here (peft makes them, on the HF engine)."""
        return {}

    @property
    def sees_pictures(self) -> bool:
        """Whether the loaded model answers about pictures (a vision-language model on the HF engine)."""
        return False

    # -- the model --------------------------------------------------------------------

    def load(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,
        progress: Callable[[Said], None] = lambda message: None,
        precision: Precision = "auto",
        cutoff_len: int | None = None,
    ) -> Said:
        """Load the model in place of the loaded one; `precision` as in training.precision ('auto': bf16 where the
        device computes it), `cutoff_len` the data.cutoff_len of the run whose adapters it serves (RoPE scaling)."""
        with self._changing():
            if self.loaded:
                self.unload()
            return self._load(model, quantization, progress, precision, cutoff_len)

    def unload(self) -> Said:
        with self._changing():
            if not self.loaded:
                return say("chat.nothing_loaded")
            return self._unload()

    @abstractmethod
    def _load(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,
        progress: Callable[[Said], None],
        precision: Precision,
        cutoff_len: int | None,
    ) -> Said:
        """The engine's own loading, nothing loaded any more and the engine held."""

    @abstractmethod
    def _unload(self) -> Said:
        """The engine's own unloading, a model loaded and the engine held."""

    # -- adapters ---------------------------------------------------------------------

    @abstractmethod
    def load_adapter(self, path: str, name: str | None = None) -> AdapterInfo: ...

    @abstractmethod
    def unload_adapter(self, name: str) -> None: ...

    @abstractmethod
    def combine(
        self, name: str, weights: dict[str, float], combination_type: str = "linear", density: float | None = None
    ) -> AdapterInfo: ...

    def _popped_adapter(self, name: str) -> AdapterInfo:
        """The loaded adapter `name`, no longer among those loaded (the engine held)."""
        if name not in self.adapters:
            raise AdapterError("chat.adapter_not_loaded", name=name)
        return self.adapters.pop(name)

    def _check_adapters(self, names: list[str | None]) -> None:
        for name in names:
            if name is not None and name not in self.adapters:
                raise AdapterError("chat.adapter_not_loaded_load_it", name=name)

    # -- answers ----------------------------------------------------------------------

    @abstractmethod
    def stream(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        stop: threading.Event | None = None,
        every_s: float = 0.25,
        *,
        tools: str | list | None = None,
        thinking: bool | None = None,
        pictures: list[list[Picture]] | None = None,
    ) -> Generator[list[Answer], None, None]:
        """Each conversation answered by its adapter (None: the base), all answers so far at most every `every_s`
        seconds, then in full (ChatEngine.stream says how)."""

    def answer(
        self,
        messages: list[Message],
        adapter: str | None,
        generation: GenerationConfig,
        *,
        tools: str | list | None = None,
        thinking: bool | None = None,
    ) -> Answer:
        *_, final = self.stream([messages], [adapter], generation, tools=tools, thinking=thinking)
        return final[0]  # the last update holds the whole answer

    def template(self) -> TemplateInfo:
        """What the loaded chat template offers: tool calls, thinking (studio.chat.prompts.TemplateInfo)."""
        from studio.chat.prompts import template_info

        self._require_model()
        return template_info(self.tokenizer)

    @abstractmethod
    def selected(self, adapter: str | None) -> contextlib.AbstractContextManager[tuple[Any, Any]]:
        """(model, tokenizer) answering with `adapter` (None: the base), held as an answer holds the engine: what
        the OpenAI endpoint calls generate() on (studio.openai_api.generation)."""

    def _generating(
        self,
        streamer: BatchStreamer,
        stopping: StopOnEvent,
        adapters: list[str | None],
        generate: Callable[[ModelT], None],
    ) -> None:
        """The generating thread of a stream: it holds the engine while `generate(model)` answers, so a model change
        waits for the answer; whatever fails is raised to the reader by studio.chat.streaming.streamed."""
        try:
            with self._lock:
                if stopping.stopped:  # stopped or abandoned while another answer or a model change held the engine
                    return
                model = self._require_model()  # the model may have changed while this answer waited
                if self.tokenizer is not streamer.tokenizer:
                    raise EngineError("chat.model_changed")
                self._check_adapters(adapters)
                generate(model)
        except Exception as error:  # raised to the reader by stream()
            streamer.error = error
        finally:
            # the reader decodes the last tokens after the engine is let go, maybe after an unload: a tokenizer that
            # dies with its model (llama.cpp's, studio.chat.gguf_engine) guards its own decode
            streamer.end()

    # -- holding the engine -----------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self, timeout_s: float = 30.0) -> Iterator[None]:
        """Hold the engine while its model changes; refuse rather than wait forever behind a long answer."""
        if not self._lock.acquire(timeout=timeout_s):
            raise EngineError("chat.busy")
        try:
            yield
        finally:
            self._lock.release()

    def _require_model(self) -> ModelT:
        if self.model is None:
            raise EngineError("chat.no_model_loaded")
        return self.model
