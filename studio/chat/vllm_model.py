"""The vLLM calls of chat.engine vllm, and nothing else: one `vllm.LLM` with LoRA on, driven a request per row.

`VllmModel.generate` takes what transformers' generate() takes (a streamer, stopping criteria, an adapter per row),
so the OpenAI endpoint's answers (studio.openai_api.generation) drive either engine's model alike, and `run` is what
Chat's side-by-side answers call (studio.chat.vllm_engine). Every argument handed to vLLM is worked out in
studio.chat.vllm_options, which is tested where vLLM cannot run; what is here runs only on a CUDA GPU with vllm
installed (bench/gpu_session.sh vllm).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from studio.chat.vllm_options import LoraSlots, generate_sampling


class VllmModel:
    """The loaded `vllm.LLM`, driven a request per row through its engine's steps, each new token handed to the row's
    streamer; `adapter` answers rows that name none (the endpoint's answers: `VllmEngine.selected`)."""

    def __init__(self, llm: Any, slots: LoraSlots, stop_ids: set[int], adapter: str | None = None):
        self.llm, self.slots, self.stop_ids, self.adapter = llm, slots, stop_ids, adapter
        # what the endpoint reads of a model's config: how long a prompt and its answer may be, as vLLM sized it
        self.config = SimpleNamespace(max_position_embeddings=llm.llm_engine.model_config.max_model_len)

    @classmethod
    def start(cls, options: dict[str, Any], slots: LoraSlots, stop_ids: set[int]) -> VllmModel:
        from vllm import LLM

        return cls(LLM(**options), slots, stop_ids)

    def bound(self, adapter: str | None) -> VllmModel:
        return VllmModel(self.llm, self.slots, self.stop_ids, adapter)

    def add_lora(self, name: str) -> None:
        """Read the adapter now, so a folder vLLM cannot use is refused when it is loaded, not at its first answer."""
        self.llm.llm_engine.add_lora(self._lora(name))

    def remove_lora(self, lora_id: int) -> None:
        self.llm.llm_engine.remove_lora(lora_id)

    def shutdown(self) -> None:
        """Let the engine go with its GPU memory (vLLM's engine core may be a process of its own)."""
        core = getattr(self.llm.llm_engine, "engine_core", None)  # LLM.shutdown is newer than the core's own
        stop = getattr(self.llm, "shutdown", None) or getattr(core, "shutdown", None)
        if stop is not None:
            stop()
        with contextlib.suppress(ImportError):
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()

    def generate(
        self,
        input_ids: Any,
        streamer: Any,
        stopping_criteria: Any = (),
        max_new_tokens: int = 256,
        attention_mask: Any = None,
        adapter_names: list[str | None] | None = None,
        **sampling: Any,
    ) -> None:
        """transformers' generate() as the endpoint calls it: the padding (attention_mask) left out of each row, the
        sampling arguments translated (vllm_options.generate_sampling); tokenizer and pad_token_id are not needed."""
        import torch

        masks = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        prompts = [row[mask.bool()].tolist() for row, mask in zip(input_ids, masks)]
        seed = int(torch.randint(0, 2**31 - 1, ()).item())  # from the generator the caller seeded: same seed, same draw
        params = generate_sampling(sampling, max_new_tokens, seed, self.stop_ids)
        sinks = [streamer] if len(prompts) == 1 else [streamer.part([row]) for row in range(len(prompts))]
        names = adapter_names or [self.adapter] * len(prompts)

        def stopped() -> bool:
            return any(getattr(criteria, "stopped", False) for criteria in stopping_criteria)

        self.run(prompts, names, params, sinks, stopped)

    def run(
        self,
        prompts: list[list[int]],
        names: list[str | None],
        params: dict[str, Any],
        sinks: list[Any],
        stopped: Callable[[], bool],
    ) -> None:
        """Answer each prompt under its adapter, stepping vLLM's engine until every row ends or `stopped()`: a row's
        tokens go to its sink (a transformers streamer) as they come, its end tokens left out, then its end()."""
        import torch
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        # every output holds all of its row's tokens so far (said, not left to the default): a skipped step loses none
        sampling = SamplingParams(**params, output_kind=RequestOutputKind.CUMULATIVE)
        engine, prefix = self.llm.llm_engine, uuid.uuid4().hex
        rows: dict[str, int] = {}
        sent, running = [0] * len(prompts), set()
        try:
            for row, (prompt, name) in enumerate(zip(prompts, names)):
                given = engine.add_request(
                    f"{prefix}-{row}", {"prompt_token_ids": prompt}, sampling, lora_request=self._lora(name)
                )
                rows[f"{prefix}-{row}"] = row
                if isinstance(given, str):  # newer vLLM answers with the id its outputs carry
                    rows[given] = row
                running.add(row)
                sinks[row].put(torch.tensor(prompt))  # the row's clock starts at its prompt, as generate() starts it
            while running and not stopped():
                for output in engine.step():
                    row = rows.get(output.request_id, -1)
                    if row not in running:
                        continue
                    tokens = list(output.outputs[0].token_ids)
                    for token in tokens[sent[row] :]:
                        if token not in self.stop_ids:
                            sinks[row].put(torch.tensor([token]))
                    sent[row] = len(tokens)
                    if output.finished:
                        running.discard(row)
                        sinks[row].end()
        finally:  # stopped, or failed: nothing of this answer may go on taking the GPU
            if running:
                engine.abort_request([f"{prefix}-{row}" for row in running])

    def _lora(self, name: str | None) -> Any:
        from vllm.lora.request import LoRARequest

        arguments = self.slots.request(name)
        return LoRARequest(*arguments) if arguments else None
