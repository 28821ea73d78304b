"""The GGUF tensor types the studio writes, and how each tensor of a model gets its type.

Offered are the types whose encoder the `gguf` package (0.19) implements in Python, so the file
can be written here and its values checked: f32, f16, bf16 and llama.cpp's block types q8_0,
q5_1, q5_0, q4_1, q4_0 (32 weights per block with one scale, plus a minimum for the _1 kinds).
The k-quants (q4_k_m, q6_k, ...) and i-quants are not: the package can read them but has no
encoder, so the studio refuses them by name (studio.config.export) and points to llama.cpp's
`llama-quantize`, which makes them from our f16 file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf.quants import dequantize, quantize

Q = GGMLQuantizationType
# The embedding and the output head are the tensors whose rounding costs most; the 4- and 5-bit types
# keep them at 8 bits (llama.cpp's own quantiser keeps them above the rest too).
EDGE_TENSORS = ("token_embd.weight", "output.weight")


@dataclass(frozen=True)
class GgufType:
    name: str
    matrix: GGMLQuantizationType  # every 2-D weight
    edge: GGMLQuantizationType  # the EDGE_TENSORS
    file_type: LlamaFileType  # general.file_type: what llama.cpp reports the file as

    @property
    def quantised(self) -> bool:
        return self.matrix not in (Q.F32, Q.F16, Q.BF16)


GGUF_TYPES = {
    t.name: t
    for t in (
        GgufType("f32", Q.F32, Q.F32, LlamaFileType.ALL_F32),
        GgufType("f16", Q.F16, Q.F16, LlamaFileType.MOSTLY_F16),
        GgufType("bf16", Q.BF16, Q.BF16, LlamaFileType.MOSTLY_BF16),
        GgufType("q8_0", Q.Q8_0, Q.Q8_0, LlamaFileType.MOSTLY_Q8_0),
        GgufType("q5_1", Q.Q5_1, Q.Q8_0, LlamaFileType.MOSTLY_Q5_1),
        GgufType("q5_0", Q.Q5_0, Q.Q8_0, LlamaFileType.MOSTLY_Q5_0),
        GgufType("q4_1", Q.Q4_1, Q.Q8_0, LlamaFileType.MOSTLY_Q4_1),
        GgufType("q4_0", Q.Q4_0, Q.Q8_0, LlamaFileType.MOSTLY_Q4_0),
    )
}


def tensor_type(kind: GgufType, gguf_name: str, shape: tuple[int, ...]) -> GGMLQuantizationType:
    """The type one tensor is stored in."""
    if len(shape) == 1:
        return Q.F32  # norms and biases: tiny, and llama.cpp reads them as f32
    qtype = kind.edge if gguf_name in EDGE_TENSORS else kind.matrix
    block = GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:  # rows that do not split into whole blocks cannot be block-quantised
        return Q.F16
    return qtype


def encode(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """The bytes (or f32/f16 values) stored for `values`, a float32 array whose last axis is a row."""
    if qtype == Q.F32:
        return np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F16:
        return values.astype(np.float16)
    return quantize(values, qtype)


def round_trip(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """`values` as a reader of the file gets them back: the rounding the type alone causes."""
    if qtype == Q.F32:
        return values
    return dequantize(encode(values, qtype), qtype).astype(np.float32).reshape(values.shape)


def stored_bytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size
