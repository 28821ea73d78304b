"""The HF engine's adapters (studio.chat.engine builds on this): what is loaded onto its one base model, and which of
it answers a row.

A peft adapter goes onto the model (a PeftModel from the first one on), a full or freeze run's tensors are kept
beside it and swapped in while selected (studio.chat.whole_models), a reward model's value head beside its adapter,
and a weighted combination of LoRA adapters is an adapter of its own with its recipe kept (studio.combinations).
Rows of one batch name their adapters as peft's mixed-adapter batches do ("__base__" the base), LoRA only; any other
selection answers in a generate of its own.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from studio.adapters import AdapterError, AdapterInfo, read_adapter
from studio.chat.engine_base import EngineBase, EngineError
from studio.chat.memory import release_memory
from studio.chat.whole_models import WholeModel, read_whole_model, swapped_in
from studio.combinations import Combination, add_combination, combination_of
from studio.locales import say

if TYPE_CHECKING:
    from collections.abc import Iterator

    from studio.locales import Message as Said
    from studio.modeling.compute import ComputePlan

BASE = "__base__"
MIXED = "__mixed__"  # rows of one batch under several LoRA adapters and the base (peft's adapter_names)


class AdapterEngine(EngineBase[Any]):
    """The adapters half of the HF engine; the model and its tokenizer are transformers' (the model a PeftModel once
    an adapter is loaded), used untyped."""

    model: Any  # None while nothing is loaded

    def __init__(self) -> None:
        super().__init__()
        self.whole: dict[str, WholeModel] = {}  # the whole-model runs' tensors, by name
        self.heads: dict[str, Any] = {}  # a reward model's value head, by its adapter's name
        self._combinations: dict[str, Combination] = {}  # weighted combinations (also in adapters), their recipes
        self._parameters: dict[str, torch.nn.Parameter] = {}  # the base's, by their names in the plain base model

    @property
    def combinations(self) -> dict[str, Combination]:
        return self._combinations

    def load_adapter(self, path: str, name: str | None = None) -> AdapterInfo:
        """A peft adapter put onto the base, or a full or freeze run's tensors kept beside it (whole_models)."""
        info = read_adapter(path, name)
        with self._changing():
            self._require_model()
            if info.name in self.adapters:
                return info
            if info.whole_model:
                self.whole[info.name] = read_whole_model(info, self._parameters, self._loaded_plan().quantized)
                self.adapters[info.name] = info
                return info
            self._load_peft(info)
            self.adapters[info.name] = info
            self._load_head(info)
            return info

    def _load_peft(self, info: AdapterInfo) -> None:
        from peft import PeftModel

        _check_shapes(self._base(), info)
        kinds = {self.adapters[name].method for name in self._peft_names} - {info.method}
        if kinds:  # peft holds adapters of one type in a model
            raise AdapterError("chat.adapter_kinds_differ", name=info.name, method=info.method, loaded=kinds.pop())
        if not self._peft_names:
            self.model = PeftModel.from_pretrained(self.model, info.path, adapter_name=info.name, is_trainable=False)
        else:
            self.model.load_adapter(info.path, adapter_name=info.name, is_trainable=False)
        self.model.eval()

    def combine(
        self, name: str, weights: dict[str, float], combination_type: str = "linear", density: float | None = None
    ) -> AdapterInfo:
        """A weighted combination of loaded LoRA adapters (studio.combinations), loaded as adapter `name`:
        it answers, mixes into side-by-side batches and unloads like any adapter; its recipe in `combinations`."""
        with self._changing():
            self._require_model()
            self._check_adapters(list(weights))
            parts = [self.adapters[part] for part in weights]
            combination = combination_of(
                name, parts, list(weights.values()), combination_type, density, set(self.adapters)
            )
            add_combination(self.model, combination)
            info = AdapterInfo(combination.name, combination.name, parts[0].base_model, combination.rank)
            self.adapters[info.name], self._combinations[info.name] = info, combination
            return info

    def _load_head(self, info: AdapterInfo) -> None:
        """A reward model's value head, kept beside its adapter (studio.training.value_head)."""
        from studio.training.value_head import head_from, read_head

        weights = read_head(info.path) if info.reward_model else None
        if weights is not None:
            self.heads[info.name] = head_from(weights).to(self._loaded_plan().device)

    def unload_adapter(self, name: str) -> None:
        with self._changing():
            info = self._popped_adapter(name)
            self.heads.pop(name, None)
            self._combinations.pop(name, None)  # a combination holds its own weights: its parts may go before it
            if info.whole_model:
                del self.whole[name]  # its tensors go; the base never held them outside a selection
            elif self._peft_names:
                self.model.set_adapter(self._peft_names[0])
                self.model.delete_adapter(name)
            else:
                self.model = self.model.unload()  # back to the plain base model, no LoRA layers left
            release_memory()

    def _forget_adapters(self) -> None:
        """Every adapter gone with the model they were loaded onto (the engine held)."""
        self.adapters.clear()
        self.whole.clear()
        self.heads.clear()
        self._combinations.clear()
        self._parameters = {}

    @property
    def _peft_names(self) -> list[str]:
        """The loaded peft adapters (the model is a PeftModel while there is one)."""
        return [name for name, info in self.adapters.items() if not info.whole_model]

    def _base(self) -> Any:
        return self.model.get_base_model() if self._peft_names else self.model

    def _loaded_plan(self) -> ComputePlan:
        """The plan the model was loaded with (set and cleared with the model)."""
        if self.plan is None:
            raise EngineError("chat.no_model_loaded")
        return self.plan

    # -- which adapter answers ----------------------------------------------------------

    def _adapter(self, name: str | None) -> contextlib.AbstractContextManager[Any]:
        """What `name` answers with, while the engine is held: a peft adapter made active, the base (None: every
        adapter off) or a whole-model run swapped in (every adapter off meanwhile)."""
        if name in self.whole:
            return self._whole_model(name)
        if not self._peft_names:
            if name is not None:
                raise AdapterError("chat.adapter_not_loaded", name=name)
            return contextlib.nullcontext()
        if name is None:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _whole_model(self, name: str) -> Iterator[None]:
        adapters_off = self.model.disable_adapter() if self._peft_names else contextlib.nullcontext()
        with adapters_off, swapped_in(self.whole[name]):
            yield

    def _groups(self, adapters: list[str | None]) -> list[tuple[str | None, list[int]]]:
        """Rows that can share a batch, as (selection, row indices): the rows peft's mixed-adapter batches serve (LoRA
        adapters and the base) together under MIXED; any other row with those of its own selection: a whole-model
        run (its tensors swapped in), an OFT adapter (peft mixes LoRA rows only), the base beside either."""
        mixed = bool(self._peft_names) and all(self.adapters[name].method == "lora" for name in self._peft_names)
        groups: dict[str | None, list[int]] = {}
        for row, name in enumerate(adapters):
            groups.setdefault(MIXED if mixed and name not in self.whole else name, []).append(row)
        return list(groups.items())

    def _row_names(self, selection: str | None, names: list[str | None]) -> list[str] | None:
        """Each row's adapter as peft's mixed batches name them, for the MIXED group."""
        return [name or BASE for name in names] if selection == MIXED else None

    def _group_weights(self, selection: str | None) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if selection == MIXED else self._adapter(selection)


def _check_shapes(base: torch.nn.Module, info: AdapterInfo) -> None:
    """Refuse an adapter trained on another architecture before PEFT touches the model."""
    from safetensors import safe_open

    weights = f"{info.path}/adapter_model.safetensors"
    try:
        handle = safe_open(weights, framework="pt")
    except OSError:
        return  # .bin adapters: PEFT's own checks apply
    with handle:
        for key in handle.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            module_path = key.removeprefix("base_model.model.").split(".lora_")[0]
            try:
                module = base.get_submodule(module_path)
            except AttributeError:
                raise _mismatch(info, say("chat.base_lacks_module", module=module_path)) from None
            shape = handle.get_slice(key).get_shape()
            expected = getattr(module, "in_features" if ".lora_A." in key else "out_features", None)
            actual = shape[1] if ".lora_A." in key else shape[0]
            if expected is not None and expected != actual:
                detail = say("chat.features_differ", module=module_path, expected=expected, actual=actual)
                raise _mismatch(info, detail)


def _mismatch(info: AdapterInfo, detail: Said) -> AdapterError:
    if info.base_model:
        return AdapterError("chat.adapter_mismatch_trained_on", name=info.name, base=info.base_model, detail=detail)
    return AdapterError("chat.adapter_mismatch", name=info.name, detail=detail)
