"""A full or freeze run served beside the base model it was trained from, without a second copy of the base.

Only the run's tensors that differ from the loaded base are kept (a freeze run's trained layers, every tensor of a
full run), on the base's device and in its dtype. While the run is selected each of those base parameters points at
the run's tensor (`.data` swapped under the engine's lock) and back afterwards: pointer swaps, so the base is
restored bit for bit, never computed back as W + d - d. The answer is then the run's own model whatever base of the
same shapes is loaded (a tensor kept equal to the base's is the run's as well).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from studio.adapters import AdapterError, AdapterInfo
from studio.config import QuantizationConfig
from studio.locales import Message, say


@dataclass
class WholeModel:
    """The run's tensors that differ from the base, each beside the base parameter it replaces."""

    info: AdapterInfo
    swaps: list[tuple[torch.nn.Parameter, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(tensor.numel() * tensor.element_size() for _, tensor in self.swaps)


def base_quantization(quantization: QuantizationConfig, whole_model: bool) -> QuantizationConfig:
    """How to load the base that serves a whole model: its tensors replace the base's, which must be unquantised, so
    'auto' means none (as when such a run trains)."""
    if whole_model and quantization.method == "auto":
        return quantization.model_copy(update={"method": "none"})
    return quantization


def read_whole_model(info: AdapterInfo, parameters: dict[str, torch.nn.Parameter], quantized: bool) -> WholeModel:
    """The run in `info.path` against the base's `parameters` (by their names in the plain base model). Refused when
    the base is quantised (its weights are no tensors to swap) or of other names or shapes."""
    if quantized:
        raise AdapterError("chat.whole_model_quantized", name=info.name, method=info.method)
    from safetensors import safe_open

    swaps, seen = [], set()
    for file in sorted(Path(info.path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                parameter = _fitting(parameters, key, tuple(handle.get_slice(key).get_shape()), info)
                tensor = handle.get_tensor(key).to(parameter.device, parameter.dtype)
                seen.add(key)
                if not torch.equal(tensor, parameter.data):
                    swaps.append((parameter, tensor))
    missing = sorted(set(parameters) - seen)
    if missing:
        raise _mismatch(info, say("chat.model_lacks_weight", weight=missing[0]))
    return WholeModel(info, swaps)


def _fitting(
    parameters: dict[str, torch.nn.Parameter], key: str, shape: tuple[int, ...], info: AdapterInfo
) -> torch.nn.Parameter:
    parameter = parameters.get(key)
    if parameter is None:
        raise _mismatch(info, say("chat.base_lacks_weight", weight=key))
    if tuple(parameter.shape) != shape:
        raise _mismatch(info, say("chat.shapes_differ", weight=key, expected=list(parameter.shape), actual=list(shape)))
    return parameter


def _mismatch(info: AdapterInfo, detail: Message) -> AdapterError:
    return AdapterError("chat.whole_model_mismatch", name=info.name, base=info.base_model or "?", detail=detail)


@contextlib.contextmanager
def swapped_in(model: WholeModel) -> Iterator[None]:
    """The base's parameters point at the run's tensors inside, at their own tensors again after."""
    kept = [parameter.data for parameter, _ in model.swaps]
    try:
        for parameter, tensor in model.swaps:
            parameter.data = tensor
        yield
    finally:
        for (parameter, _), own in zip(model.swaps, kept):
            parameter.data = own
