"""Chat's engine through vLLM (chat.engine: vllm): one `vllm.LLM` with LoRA on, each loaded adapter a LoRARequest.

It offers what Chat, `qlora-studio chat`/`serve` and the OpenAI endpoint use of the HF engine (studio.chat.engine):
load and unload, adapters by name, `stream`, `answer`, `template`, `selected`. Each row of a side-by-side answer is
a request of its own under its adapter (None: the base), so base and adapters answer in one batch, as peft's mixed
batches do on the HF engine. Prompts are the HF engine's own token ids (the same template, tools and thinking:
studio.chat.prompts), and tokens stream into the same BatchStreamer, read as Chat reads them.

Nothing here calls vLLM: its calls are in studio.chat.vllm_model, and what they are given is worked out in
studio.chat.vllm_options; so everything but those calls runs, and is tested, where vLLM cannot run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from studio.adapters import AdapterInfo, read_adapter
from studio.chat.engine_base import EngineBase
from studio.chat.memory import release_memory
from studio.chat.prompts import Prompting, prompt_ids, prompting_for, template_refusals, with_system
from studio.chat.replies import reply_reader
from studio.chat.streaming import Answer, BatchStreamer, StopOnEvent, streamed
from studio.chat.vllm_model import VllmModel
from studio.chat.vllm_options import (
    LoraSlots,
    VllmRefused,
    check_loadable,
    check_servable,
    check_vllm,
    generation_sampling,
    llm_options,
)
from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.config.training import Precision
from studio.data.formats import Message
from studio.locales import Message as Said
from studio.locales import say

if TYPE_CHECKING:
    from studio.chat.pictures import Picture


class VllmEngine(EngineBase[VllmModel]):
    """The chat engine over vLLM; `settings` (chat.*) apply when a model is loaded. Its tokenizer is transformers'
    with the studio's chat template: it encodes the prompts and decodes the answers."""

    def __init__(self, settings: ChatConfig, checked: bool = False):
        """`checked`: vLLM was found to run here (studio.chat.engines), so loading need not ask again."""
        super().__init__()
        self.settings, self.checked = settings, checked
        self.base_loads = 0
        self._slots = LoraSlots()

    def _load(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,
        progress: Callable[[Said], None],
        precision: Precision,
        cutoff_len: int | None,  # for the HF engine's RoPE scaling, which vLLM is refused (vllm_options)
    ) -> Said:
        from studio.modeling.chat_templates import stop_ids
        from studio.modeling.compute import dtype_name, resolve_plan
        from studio.modeling.loader import load_tokenizer
        from studio.modeling.sources import resolve_model_path

        if not self.checked:  # a script's engine: refused here rather than deep in vLLM
            check_vllm()
            self.checked = True
        plan, started = resolve_plan(quantization, TrainingConfig(precision=precision)), time.time()
        check_loadable(model, plan)  # before a download
        key = "engines.vllm_loading_4bit" if plan.quantize_4bit else "engines.vllm_loading"
        progress(say(key, name=model.name_or_path, dtype=dtype_name(plan.compute_dtype)))
        path = resolve_model_path(model, progress=progress)
        tokenizer = load_tokenizer(model, path)
        stops = stop_ids(SimpleNamespace(generation_config=_generation_config(path)), tokenizer)
        try:
            self.model = VllmModel.start(llm_options(path, model, plan, self.settings), self._slots, stops)
        except (ValueError, RuntimeError) as error:  # vLLM's own refusals: no room for the KV cache, an architecture
            raise VllmRefused("engines.vllm_failed", name=model.name_or_path, error=str(error)) from None
        self.tokenizer, self.model_name, self.plan = tokenizer, model.name_or_path, plan
        self.base_loads += 1
        return say(
            "engines.vllm_loaded",
            name=model.name_or_path,
            seconds=time.time() - started,
            context=self.model.config.max_position_embeddings,
            max_loras=self.settings.max_loras,
            rank=self.settings.max_lora_rank,
            share=self.settings.gpu_memory_utilization,
        )

    def _unload(self) -> Said:
        model, self.model, self.tokenizer, self.plan = self._require_model(), None, None, None
        self.adapters.clear()
        self._slots.clear()
        model.shutdown()
        del model
        release_memory()
        return say("engines.vllm_unloaded", name=self.model_name)

    # -- adapters -------------------------------------------------------------------

    def load_adapter(self, path: str, name: str | None = None) -> AdapterInfo:
        """A LoRA adapter, handed to vLLM under an id of its own; what vLLM cannot serve is refused by name first."""
        info = read_adapter(path, name)
        check_servable(info, self.settings.max_lora_rank)
        with self._changing():
            model = self._require_model()
            if info.name in self.adapters:
                return info
            self._slots.add(info.name, info.path)
            try:
                model.add_lora(info.name)
            except Exception as error:  # vLLM's reading of the folder: target modules it lacks, shapes
                self._slots.remove(info.name)
                raise VllmRefused("engines.vllm_adapter_failed", name=info.name, error=str(error)) from None
            self.adapters[info.name] = info
            return info

    def unload_adapter(self, name: str) -> None:
        with self._changing():
            self._popped_adapter(name)
            self._require_model().remove_lora(self._slots.remove(name))

    def combine(
        self, name: str, weights: dict[str, float], combination_type: str = "linear", density: float | None = None
    ) -> AdapterInfo:
        raise VllmRefused("engines.vllm_no_combinations", name=name or "combination")

    # -- answers --------------------------------------------------------------------

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
        """As ChatEngine.stream: every row's answer so far at most every `every_s` seconds, then in full; the
        generating thread holds the engine, and a reader gone ends the answer at its next step."""
        if pictures and any(pictures):
            raise VllmRefused("engines.vllm_no_pictures")
        self._require_model()
        self._check_adapters(adapters)
        prompting = prompting_for(conversations, tools, thinking)
        reader = reply_reader(self.tokenizer, prompting) if prompting else None
        streamer = BatchStreamer(self.tokenizer, len(conversations), reader)
        generate = partial(self._generate, conversations, adapters, generation, streamer, prompting=prompting)
        yield from streamed(streamer, generate, stop, every_s)

    def _generate(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        streamer: BatchStreamer,
        stopping: StopOnEvent,
        prompting: Prompting | None,
    ) -> None:
        def run(model: VllmModel) -> None:
            # encoded here, under the engine: a fast tokenizer must not serve two threads at once
            prompts = [
                _prompt(self.tokenizer, with_system(c, generation.system_prompt), prompting) for c in conversations
            ]
            parts = [streamer.part([row]) for row in range(len(prompts))]
            sampling = generation_sampling(generation, model.stop_ids)
            model.run(prompts, adapters, sampling, parts, lambda: stopping.stopped)

        self._generating(streamer, stopping, adapters, run)

    @contextlib.contextmanager
    def selected(self, adapter: str | None) -> Iterator[tuple[Any, Any]]:
        """(model, tokenizer) answering with `adapter` (None: the base), held as an answer holds the engine: what the
        endpoint's answers call generate() on."""
        self._require_model()
        self._check_adapters([adapter])
        with self._lock:
            yield self._require_model().bound(adapter), self.tokenizer


def _prompt(tokenizer: Any, conversation: list[Message], prompting: Prompting | None) -> list[int]:
    """The ids that ask for the next answer, as the HF engine encodes them (ChatEngine._encode), unpadded."""
    with template_refusals():  # as ChatEngine._encode: the model's own template may refuse a conversation
        if prompting is not None:
            return prompt_ids(tokenizer, conversation, prompting)
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _generation_config(path: str) -> Any:
    """The model's generation_config.json (its end tokens), None when it has none."""
    from transformers import GenerationConfig as Generating

    try:
        return Generating.from_pretrained(path)
    except OSError:
        return None
