"""Write a merged transformers model as one GGUF file, tensor by tensor, with progress and an ETA.

The header (metadata and the table of tensors) goes first, then each tensor is converted, encoded
and written in turn, so only one tensor's encoding is in memory at a time. The file is written
under a temporary name and renamed when complete: a half-written file never looks like a model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.export.gguf_arch import Architecture, architecture_of, tensor_name, to_file_layout, write_hyperparameters
from studio.export.gguf_types import GgufType, encode, stored_bytes, tensor_type
from studio.export.gguf_vocab import write_vocab
from studio.locales import Message
from studio.runs.text import format_duration

if TYPE_CHECKING:
    from gguf import GGMLQuantizationType, GGUFWriter
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class WriteProgress(Message):
    """Tensors written so far: a line in any language like every Message, and its numbers, which the page's
    progress line (it has `done`) and a terminal read."""

    done: int
    total: int
    tensor: str
    elapsed_s: float
    eta_s: float | None

    def __new__(cls, done: int, total: int, tensor: str, elapsed_s: float, eta_s: float | None) -> WriteProgress:
        line = super().__new__(
            cls,
            "export.gguf_writing_tensor",
            done=done,
            total=total,
            tensor=tensor,
            elapsed=format_duration(elapsed_s),
            eta=format_duration(eta_s, "–"),
        )
        line.done, line.total, line.tensor, line.elapsed_s, line.eta_s = done, total, tensor, elapsed_s, eta_s
        return line


@dataclass(frozen=True)
class _Planned:
    hf_name: str
    gguf_name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType


def plan_tensors(model: PreTrainedModel, kind: GgufType) -> list[_Planned]:
    """Every tensor the file holds, in file order, with its llama.cpp name and stored type."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    planned = []
    for hf_name, tensor in model.state_dict().items():
        gguf_name = tensor_name(hf_name, tied)
        if gguf_name is not None:
            shape = tuple(tensor.shape)
            planned.append(_Planned(hf_name, gguf_name, shape, tensor_type(kind, gguf_name, shape)))
    return planned


def write_gguf(
    path: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kind: GgufType,
    *,
    name: str,
    pre: str | None = None,
    progress: Callable[[object], None] = lambda item: None,
) -> Path:
    """Write `model` (merged, unquantised) and `tokenizer` to `path`; returns `path`."""
    from gguf import GGML_QUANT_VERSION, GGUFWriter

    arch = architecture_of(model.config)
    planned = plan_tensors(model, kind)
    partial = path.with_name(path.name + ".partial")
    writer = GGUFWriter(partial, arch.name)
    try:
        writer.add_name(name)
        writer.add_file_type(int(kind.file_type))
        writer.add_quantization_version(GGML_QUANT_VERSION)
        write_hyperparameters(writer, model.config, arch)
        write_vocab(writer, tokenizer, int(model.config.vocab_size), pre)
        for item in planned:
            writer.add_tensor_info(
                item.gguf_name,
                item.shape,
                np.dtype(np.float32),
                stored_bytes(item.shape, item.qtype),
                raw_dtype=item.qtype,
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensors(writer, model, planned, arch, progress)
    finally:
        writer.close()
    os.replace(partial, path)
    return path


def _write_tensors(
    writer: GGUFWriter,
    model: PreTrainedModel,
    planned: list[_Planned],
    arch: Architecture,
    progress: Callable[[object], None],
) -> None:
    state = model.state_dict()
    weights = [int(np.prod(item.shape)) for item in planned]
    total, done, started = sum(weights), 0, time.time()
    for index, (item, count) in enumerate(zip(planned, weights), start=1):
        values = state[item.hf_name].detach().to("cpu").float().numpy()
        writer.write_tensor_data(encode(to_file_layout(item.gguf_name, values, arch, model.config), item.qtype))
        done += count
        elapsed = time.time() - started
        # encoding time grows with the number of weights, so the weights left say how long is left
        progress(WriteProgress(index, len(planned), item.gguf_name, elapsed, elapsed * (total - done) / max(done, 1)))
