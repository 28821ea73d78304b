"""The chat engine: one base model in memory, adapters and whole-model runs loaded onto it by name, streamed answers.

Side-by-side answers come from one batched `generate` in which each row names its adapter
(PEFT's mixed-adapter batches; "__base__" is the base model), so base and adapter share the
prompt, the parameters and the step loop, and neither waits for the other. A full or freeze run
(studio.chat.whole_models) answers in a `generate` of its own, its tensors swapped into the base's
parameters meanwhile, and so does an OFT adapter (peft mixes LoRA rows only): their rows follow the
others' in the same stream. What is loaded onto the base, and which of it answers a row, is
studio.chat.engine_adapters; what every engine shares, studio.chat.engine_base.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from studio.adapters import AdapterError
from studio.chat.engine_adapters import AdapterEngine
from studio.chat.engine_base import EngineError
from studio.chat.memory import read_memory, release_memory
from studio.chat.pictures import ChatPictures, Picture, PictureError, carried, check_text
from studio.chat.prompts import Prompting, prompt_ids, prompting_for, template_refusals, with_system
from studio.chat.replies import reply_reader
from studio.chat.streaming import Answer, BatchStreamer, StopOnEvent, streamed
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.config.training import Precision
from studio.data.formats import Message
from studio.locales import Message as Said  # a chat Message is a turn of a conversation
from studio.locales import say
from studio.modeling.chat_templates import stop_ids

if TYPE_CHECKING:
    from studio.data.tokenize import Encoded
    from studio.modeling.compute import ComputePlan

__all__ = ["ChatEngine", "EngineError"]


class ChatEngine(AdapterEngine):
    """The HF engine (chat.engine: hf): transformers and peft, the one Evaluate and reward scores use."""

    def __init__(self) -> None:
        super().__init__()
        self.base_loads = 0  # how often a base model was loaded; adapters never add to it
        self.pictures: ChatPictures | None = None  # how a vision-language base sees pictures; None: a text model

    @property
    def sees_pictures(self) -> bool:
        return self.pictures is not None

    # -- base model -----------------------------------------------------------------

    def _load(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,
        progress: Callable[[Said], None],
        precision: Precision,
        cutoff_len: int | None,
    ) -> Said:
        from studio.modeling.compute import resolve_plan
        from studio.modeling.loader import load_base_model, load_tokenizer
        from studio.modeling.sources import resolve_model_path

        before, started = read_memory(), time.time()
        plan = resolve_plan(quantization, TrainingConfig(precision=precision))
        progress(_loading(model.name_or_path, plan))
        path = resolve_model_path(model, progress=progress)
        self.tokenizer = load_tokenizer(model, path)
        self.tokenizer.padding_side = "left"  # batched prompts must end where generation starts
        self.model = load_base_model(model, path, plan, tokenizer=self.tokenizer, cutoff_len=cutoff_len).eval()
        self._parameters = dict(self.model.named_parameters())  # the same objects once peft wraps their modules
        self.pictures = ChatPictures.of(model, path, self.model)
        self.model_name, self.plan, self.base_loads = model.name_or_path, plan, self.base_loads + 1
        seconds, memory = time.time() - started, read_memory().minus(before)
        return say("chat.loaded", name=model.name_or_path, seconds=seconds, memory=memory)

    def _unload(self) -> Said:
        before = read_memory()
        self.model = self.tokenizer = self.plan = self.pictures = None
        self._forget_adapters()
        release_memory()
        memory = read_memory().minus(before)
        return say("chat.unloaded", name=self.model_name, memory=memory)

    # -- generation -----------------------------------------------------------------

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
        """Answer each conversation with its adapter (None: the base model), yielding all answers so far: at most
        every `every_s` seconds while tokens come, then in full. Four a second still reads as streaming, and a
        page redrawing both panes no longer follows every token (bench/chat_stream_speed.py: on two cores shared with
        the browser, two or one a second gained nothing measurable over four).

        `tools` (function schemas, studio.chat.tools.check_tools) are offered to every row alike, and `thinking`
        switches a reasoning template's thinking (None: as loaded). With either, or with tool turns (function_call,
        observation) in a conversation, prompts are encoded as training encodes them (studio.chat.prompts) and each
        answer is read by its template: its thought, its calls and its text apart (studio.chat.replies).
        `pictures`, for a vision-language model, are each conversation's pictures in the order of its `<image>`
        placeholders (studio.chat.pictures).

        The generating thread holds the engine from start to end, never this generator: a page runs each step of
        a generator on whichever worker thread is free and may close it from yet another, so a lock held across a
        yield would be released by a thread that does not own it, or never. A reader that stops listening (the
        generator closed or dropped) ends the generation at its next token, which frees the engine.
        """
        self._require_model()
        self._check_adapters(adapters)
        pictures = pictures if pictures is not None else carried(conversations)
        self._check_pictures(conversations, pictures, generation)
        prompting = prompting_for(conversations, tools, thinking)
        reader = reply_reader(self.tokenizer, prompting) if prompting else None
        streamer = BatchStreamer(self.tokenizer, len(conversations), reader)
        job = partial(
            self._generate, conversations, adapters, generation, streamer, prompting=prompting, pictures=pictures
        )
        yield from streamed(streamer, job, stop, every_s)

    def token_loss(
        self,
        conversations: list[list[Message]],
        adapter: str | None,
        cutoff_len: int,
        batch_size: int,
        on_batch: Callable[[int], None] = lambda scored: None,
    ) -> tuple[float, int]:
        """Summed cross-entropy over the answer tokens and how many were scored; `on_batch(n)` after each batch."""
        from studio.data.tokenize import encode_conversation
        from studio.training.batches import collate, predicted_tokens

        self._require_model()
        pictures = self.pictures
        encoder = pictures.training.encoder(self.tokenizer) if pictures is not None else None
        encoded = [
            e for c in conversations if (e := encode_conversation(self.tokenizer, c, cutoff_len, pictures=encoder))
        ]
        total, count = 0.0, 0
        with self._lock, self._adapter(adapter), torch.inference_mode():
            device = self._loaded_plan().device
            for start in range(0, len(encoded), batch_size):
                batch = encoded[start : start + batch_size]
                tensors = collate(batch, self.tokenizer.pad_token_id)
                if pictures is not None:
                    tensors |= pictures.scored_inputs(batch, tensors["input_ids"])
                tensors = {k: v.to(device) for k, v in tensors.items()}
                total += self.model(**tensors, num_items_in_batch=1).loss.float().item()  # a sum, not a mean
                count += predicted_tokens(batch)
                on_batch(len(batch))
        return total, count

    def answer_logps(
        self,
        documents: list[Encoded],
        adapter: str | None,
        batch_size: int,
        on_batch: Callable[[int], None] = lambda scored: None,
    ) -> list[tuple[float, int]]:
        """For each tokenised document (studio.data.tokenize.Encoded): the summed log-probability of its labelled
        tokens under `adapter` (None: the base model) and how many there are; `on_batch(n)` after each batch.
        A document's pictures (`Encoded.images`) reach a vision-language model as its pixel inputs."""
        from studio.data.tokenize import IGNORE_INDEX

        results = []
        for tensors in self._batches(documents, adapter, batch_size, on_batch):
            inputs = {name: tensor for name, tensor in tensors.items() if name != "labels"}  # ids, mask, pictures
            logits = self.model(**inputs).logits
            targets = tensors["labels"][:, 1:]
            labelled = targets != IGNORE_INDEX
            logps = logits[:, :-1].float().log_softmax(-1).gather(2, targets.clamp(min=0)[..., None]).squeeze(-1)
            results += list(zip((logps * labelled).sum(1).tolist(), labelled.sum(1).tolist()))
        return results

    def reward_scores(
        self,
        documents: list[Encoded],
        adapter: str,
        batch_size: int,
        on_batch: Callable[[int], None] = lambda scored: None,
    ) -> list[float]:
        """The reward model `adapter`'s score of each tokenised document (prompt and answer), read at its last
        token; AdapterError when `adapter` is no reward model. A document's pictures reach a vision-language model
        as its pixel inputs, through the trunk that takes them (the one the rm stage's forward pass runs)."""
        head = self.heads.get(adapter)
        if head is None:
            raise AdapterError("chat.not_a_reward_model", name=adapter)
        scores: list[float] = []
        for tensors in self._batches(documents, adapter, batch_size, on_batch):
            mask = tensors["attention_mask"]
            inputs = {name: tensor for name, tensor in tensors.items() if name != "labels"}  # ids, mask, pictures
            # the language model alone would read the image tokens without their pictures' features
            trunk = self._base().model if "pixel_values" in inputs else self._base().get_decoder()
            hidden = trunk(**inputs).last_hidden_state
            last = mask.sum(1) - 1  # collate pads on the right
            scores += head(hidden[torch.arange(len(last), device=last.device), last]).float().tolist()
        return scores

    def _batches(
        self, documents: list[Encoded], adapter: str | None, batch_size: int, on_batch: Callable[[int], None]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The documents right-padded in batches on the model's device, under `adapter`, without gradients, with the
        pixel inputs of their pictures (a vision-language model's); the engine is held until the last batch is
        scored, and `on_batch(n)` follows each."""
        from studio.training.batches import collate

        self._require_model()
        with self._lock, self._adapter(adapter), torch.inference_mode():
            device = self._loaded_plan().device
            for start in range(0, len(documents), batch_size):
                batch = documents[start : start + batch_size]
                tensors = collate(batch, self.tokenizer.pad_token_id)
                if self.pictures is not None:
                    tensors |= self.pictures.scored_inputs(batch, tensors["input_ids"])
                yield {k: v.to(device) for k, v in tensors.items()}
                on_batch(len(batch))

    def score_text(self, messages: list[Message], answer: str, adapter: str) -> float:
        """The reward model's score of `answer` to the conversation `messages`."""
        from studio.data.tokenize import IGNORE_INDEX, Encoded
        from studio.data.tokenize_kinds import encode_one_turn

        prompt, answer_ids = encode_one_turn(self.tokenizer, messages, {"role": "assistant", "content": answer})
        ids = prompt + answer_ids
        return self.reward_scores([Encoded(ids, [IGNORE_INDEX] * len(ids), False)], adapter, 1)[0]

    @contextlib.contextmanager
    def selected(self, adapter: str | None) -> Iterator[tuple[Any, Any]]:
        """(model, tokenizer) with `adapter` on (None: the base, every adapter off), for a library that drives the
        model itself (lm-eval); held under the engine's lock, as a generation is."""
        self._require_model()
        self._check_adapters([adapter])
        with self._lock, self._adapter(adapter):
            yield self.model, self.tokenizer

    def answers(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        on_done: Callable[[int, str], None] = lambda row, text: None,
        pictures: list[list[Picture]] | None = None,
    ) -> list[str]:
        """Every conversation answered by its adapter (None: the base) in one batch whose finished rows leave it
        (studio.modeling.decode): for evaluation, where nothing streams. `on_done(row, text)` as each row finishes."""
        from studio.modeling.decode import decode

        self._require_model()
        self._check_adapters(adapters)
        pictures = pictures if pictures is not None else carried(conversations)
        self._check_pictures(conversations, pictures, generation)
        texts = [""] * len(conversations)
        with self._lock, torch.inference_mode():
            for selection, rows in self._groups(adapters):
                inputs = self._rows_inputs(conversations, rows, generation, None, pictures)

                def done(row: int, ids: list[int], rows: list[int] = rows) -> None:
                    on_done(rows[row], self._text(ids))

                torch.manual_seed(generation.seed)
                with self._group_weights(selection):
                    names = self._row_names(selection, [adapters[r] for r in rows])
                    if "pixel_values" in inputs:  # decode's positions are 1-D; pictures need the model's 3-D ones
                        tokens = self._generated(inputs, generation, names, done)
                    else:
                        tokens = decode(
                            self.model,
                            inputs["input_ids"],
                            inputs["attention_mask"],
                            generation,
                            self.stop_ids,
                            names,
                            done,
                        )
                for row, ids in zip(rows, tokens):
                    texts[row] = self._text(ids)
        return texts

    def _generated(
        self,
        inputs: dict[str, torch.Tensor],
        generation: GenerationConfig,
        names: list[str] | None,
        done: Callable[[int, list[int]], None],
    ) -> list[list[int]]:
        """Answers through the model's own generate (rows with pictures: studio.modeling.decode.generated)."""
        from studio.modeling.decode import generated

        kwargs = _sampling(generation) | ({"adapter_names": names} if names is not None else {})
        pad = self.tokenizer.pad_token_id
        answers = generated(self.model, inputs, self.stop_ids, generation.max_new_tokens, pad, **kwargs)
        for row, ids in enumerate(answers):
            done(row, ids)
        return answers

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def stop_ids(self) -> set[int]:
        """End tokens: the model's generation config's, the tokenizer's and its chat format's stop words."""
        return stop_ids(self._base(), self.tokenizer)

    def kv_bytes_per_token(self) -> int:
        """KV-cache memory one token of one row takes: what bounds how many rows a batch can hold."""
        config = self._base().config
        config = getattr(config, "text_config", config)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        element = torch.finfo(self._loaded_plan().weight_dtype).bits // 8
        return 2 * config.num_hidden_layers * heads * head_dim * element

    def _generate(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        streamer: BatchStreamer,
        stopping: StopOnEvent,
        prompting: Prompting | None = None,
        pictures: list[list[Picture]] | None = None,
    ) -> None:
        """The generating thread: holds the engine while it answers, so a model change waits for the answer."""
        job = partial(self._generate_into, conversations, adapters, generation, streamer, stopping, prompting, pictures)
        self._generating(streamer, stopping, adapters, lambda model: job())

    def _generate_into(
        self,
        conversations: list[list[Message]],
        adapters: list[str | None],
        generation: GenerationConfig,
        streamer: BatchStreamer,
        stopping: StopOnEvent,
        prompting: Prompting | None = None,
        pictures: list[list[Picture]] | None = None,
    ) -> None:
        ends = sorted(self.stop_ids)
        streamer.stop_at(set(ends))  # an end token ends its row, as the padding generate writes after it does
        for selection, rows in self._groups(adapters):  # one group unless a whole-model run or OFT answers
            if stopping.stopped:
                return
            inputs = self._rows_inputs(conversations, rows, generation, prompting, pictures)
            kwargs = _sampling(generation)
            names = self._row_names(selection, [adapters[r] for r in rows])
            if names is not None:
                kwargs["adapter_names"] = names
            torch.manual_seed(generation.seed)
            with self._group_weights(selection), torch.inference_mode():
                self.model.generate(
                    **inputs,
                    **kwargs,
                    max_new_tokens=generation.max_new_tokens,
                    streamer=streamer.part(rows),
                    stopping_criteria=[stopping],
                    # every end token, the chat format's included, which the model's generation config may not name
                    # (as decode.generated ends Evaluate's rows)
                    eos_token_id=ends,
                    pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else ends[0],
                )

    def _check_pictures(
        self, conversations: list[list[Message]], pictures: list[list[Picture]] | None, generation: GenerationConfig
    ) -> None:
        """Before anything is generated: pictures only for a vision-language model, whose own picture words are
        refused in the text (the system prompt included), as training data refuses them."""
        if self.pictures is not None:
            check_text([with_system(c, generation.system_prompt) for c in conversations])
        elif pictures and any(pictures):
            raise PictureError("chat.pictures_need_vision_model", model=self.model_name)

    def _rows_inputs(
        self,
        conversations: list[list[Message]],
        rows: list[int],
        generation: GenerationConfig,
        prompting: Prompting | None,
        pictures: list[list[Picture]] | None,
    ) -> dict[str, torch.Tensor]:
        """The model's inputs for some rows: their prompts, and with pictures their pixels and token types."""
        chosen = [with_system(conversations[r], generation.system_prompt) for r in rows]
        if not pictures or self.pictures is None:
            return self._encode(chosen, prompting)
        chosen, pixels = self.pictures.expand(chosen, [pictures[r] for r in rows])
        inputs = self._encode(chosen, prompting)
        if pixels:
            device = self._loaded_plan().device
            inputs |= {k: v.to(device) for k, v in pixels.items()}
            inputs["mm_token_type_ids"] = self.pictures.token_types(inputs["input_ids"])
        return inputs

    def _encode(
        self, conversations: list[list[Message]], prompting: Prompting | None = None
    ) -> dict[str, torch.Tensor]:
        if prompting is not None:  # as training encodes them (studio.chat.prompts), left-padded into one batch
            with template_refusals():
                ids = [prompt_ids(self.tokenizer, c, prompting) for c in conversations]
            batch = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        else:
            with template_refusals():  # the model's own template may refuse a system turn, or turns that repeat
                texts = [
                    self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                    for c in conversations
                ]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self._loaded_plan().device) for k, v in batch.items()}


def _sampling(generation: GenerationConfig) -> dict:
    if generation.temperature == 0:
        return {
            "do_sample": False,
            "repetition_penalty": generation.repetition_penalty,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
    return {
        "do_sample": True,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "top_k": generation.top_k or None,
        "repetition_penalty": generation.repetition_penalty,
    }


def _loading(name: str, plan: ComputePlan) -> Said:
    """What is loaded and how: the plan's method without its training details (compute dtype, where it trains)."""
    if plan.quantize_4bit:
        backend = "chat.backend_cuda" if plan.device == "cuda" else "chat.backend_cpu"
        return say("chat.loading_4bit", name=name, quant_type=plan.quant_type.upper(), backend=say(backend))
    from studio.modeling.compute import dtype_name

    return say("chat.loading_unquantized", name=name, dtype=dtype_name(plan.weight_dtype), device=plan.device.upper())
