"""GGUF export: the file reloads through transformers' GGUF reader with the merged model's logits.

Each export compares three things on real files: the .gguf against the merged model (what users
ask), the merged model rounded in memory as the type stores it (the type's own error), and the
file against that rounded model (must be float-rounding small: names, layout, metadata).
"""

import numpy as np
import pytest
import torch

from studio.config import RunConfig
from studio.errors import StudioError
from studio.export.gguf_arch import GgufUnsupported, architecture_of
from studio.export.gguf_export import export_gguf
from studio.export.gguf_types import GGUF_TYPES, round_trip
from studio.export.merge import ExportError


def _config(model, out, gguf_type, **extra):
    return RunConfig().with_overrides(
        {
            "model.name_or_path": str(model),
            "export.output_dir": str(out),
            "export.format": "gguf",
            "export.gguf_type": gguf_type,
            **extra,
        }
    )


def _fields(path):
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return reader, {
        name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.ggml.")
    }


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """A Llama with grouped-query attention, an untied head and its own rope base: the Q/K row order is checked."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from studio.dev.tiny_models import build_tokenizer

    target, tokenizer = tmp_path_factory.mktemp("models") / "tiny-llama", build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer) + 7,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=50000.0,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def llama_adapter(tmp_path_factory, tiny_llama_dir):
    from tests.support import make_adapter

    return make_adapter(tiny_llama_dir, tmp_path_factory.mktemp("adapters") / "llama", seed=4)


def test_tiny_qwen2_f16_reloads_with_the_merged_logits(tiny_model_dir, strong_adapter, tmp_path):
    out = tmp_path / "take-home"
    report = export_gguf(_config(tiny_model_dir, out, "f16"), str(strong_adapter))
    assert report.passed and report.tokenizer_matches and report.check_diff <= 1e-4
    assert (
        report.max_logit_diff < 0.05 and abs(report.max_logit_diff - report.expected_diff) <= 1e-4
    )  # f16 rounding only
    assert report.gguf_file == "take-home-f16.gguf" and {"Modelfile", "README.md", report.gguf_file} == set(
        report.files
    )
    reader, fields = _fields(out / report.gguf_file)
    assert fields["general.architecture"] == "qwen2" and fields["qwen2.block_count"] == 2
    names = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert "output.weight" not in names  # tied head: llama.cpp reuses token_embd
    assert names["blk.0.attn_q.bias"] == "F32" and names["blk.1.ffn_down.weight"] == "F16"
    assert fields["tokenizer.chat_template"].startswith("{# qlora-studio chat format chatml #}")
    assert reader.fields["tokenizer.ggml.pre"].contents() == "qwen2"
    assert 'PARAMETER stop "<|im_end|>"' in (out / "Modelfile").read_text()
    assert "GGUF f16" in (out / "README.md").read_text() and "ollama create" in (out / "README.md").read_text()


def test_tiny_qwen2_q8_0_is_the_merged_model_rounded_as_q8_0(tiny_model_dir, strong_adapter, tmp_path):
    report = export_gguf(_config(tiny_model_dir, tmp_path / "q8", "q8_0"), str(strong_adapter))
    assert report.passed and report.check_diff <= 1e-4
    assert 0 < report.expected_diff and abs(report.max_logit_diff - report.expected_diff) <= 1e-4
    reader, fields = _fields(tmp_path / "q8" / report.gguf_file)
    assert fields["general.file_type"] == 7 and {t.tensor_type.name for t in reader.tensors} == {"Q8_0", "F32"}


def test_q8_0_rounding_stays_within_half_a_step_of_each_block():
    values = np.random.default_rng(0).normal(size=(16, 256)).astype(np.float32)
    error = np.abs(round_trip(values, GGUF_TYPES["q8_0"].matrix) - values).reshape(16, 8, 32)
    step = np.abs(values).reshape(16, 8, 32).max(axis=-1, keepdims=True) / 127  # one scale per 32 weights
    # half a step, plus the scale's own rounding to f16 (2^-11 relative) times at most 127 steps
    assert np.all(error <= step * (0.5 + 127 / 2048))


@pytest.mark.parametrize("gguf_type", ["f32", "q4_0"])
def test_tiny_llama_reloads_with_its_q_k_rows_in_llama_cpp_order(tiny_llama_dir, llama_adapter, tmp_path, gguf_type):
    report = export_gguf(_config(tiny_llama_dir, tmp_path / gguf_type, gguf_type), str(llama_adapter))
    assert report.passed and report.check_diff <= 1e-4
    if gguf_type == "f32":
        assert report.max_logit_diff <= 1e-4 and report.agreement == 1.0
        # llama.cpp itself (where installed) reads the rows and GPT-2's pre-tokenizer the same way: its answers part
        # from the merged model's at a near tie at most (this random model has one within 5e-5 on the first prompt)
        check = report.llama_cpp
        assert check is None or ((check.equal or check.parted_at_ties) and check.tokenizer_matches)
    reader, fields = _fields(tmp_path / gguf_type / report.gguf_file)
    assert fields["llama.rope.freq_base"] == 50000.0 and fields["llama.attention.head_count_kv"] == 2
    names = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert names["output.weight"] == ("F32" if gguf_type == "f32" else "Q8_0")  # the head stays at 8 bits in q4_0
    assert gguf_type == "f32" or names["blk.0.attn_q.weight"] == "Q4_0"


def test_a_layout_mistake_fails_the_reload_check(tiny_llama_dir, llama_adapter, tmp_path, monkeypatch):
    import studio.export.gguf_arch as arch

    monkeypatch.setitem(arch.ARCHITECTURES, "llama", arch.Architecture("llama", interleave_qk=False))
    with pytest.raises(ExportError, match="failed its reload check"):
        export_gguf(_config(tiny_llama_dir, tmp_path / "wrong", "f32"), str(llama_adapter))
    assert (tmp_path / "wrong" / "EXPORT_FAILED_CHECK.txt").is_file()


def test_other_architectures_and_k_quants_are_refused_by_name(tmp_path, tiny_model_dir, strong_adapter):
    from transformers import GPT2Config, LlamaConfig

    with pytest.raises(GgufUnsupported, match="'gpt2'"):
        architecture_of(GPT2Config())
    scaled = LlamaConfig(
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    )
    with pytest.raises(GgufUnsupported, match="rope scaling 'llama3'"):
        architecture_of(scaled)
    with pytest.raises(StudioError, match="q4_k_m is written only by llama.cpp's own quantiser.*llama-quantize"):
        _config(tiny_model_dir, tmp_path / "k", "q4_k_m")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old.gguf").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_gguf(_config(tiny_model_dir, tmp_path / "taken", "f16"), str(strong_adapter))


@pytest.mark.slow
@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_embedded_default_round_trip(tmp_path_factory, tmp_path, gguf_type):
    """SmolLM2-135M (llama, tied, 30 layers, smollm pre-tokenizer) merged with an adapter, reloaded from the file."""
    from studio.modeling.embedded import embedded_model_dir
    from tests.support import make_adapter

    adapter = tmp_path_factory.getbasetemp() / "embedded-adapter"
    if not adapter.exists():
        make_adapter(embedded_model_dir(), adapter, seed=1, scale=0.05)
    report = export_gguf(
        RunConfig().with_overrides(
            {"export.output_dir": str(tmp_path / gguf_type), "export.format": "gguf", "export.gguf_type": gguf_type}
        ),
        str(adapter),
    )
    assert report.passed and report.tokenizer_matches and report.check_diff <= 1e-3
    reader, fields = _fields(tmp_path / gguf_type / report.gguf_file)
    assert fields["general.architecture"] == "llama" and reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    if gguf_type == "f16":  # f16 rounding of 30 layers: logits of size ~40 move by hundredths
        assert report.max_logit_diff < 0.1 and report.agreement >= 0.99
    else:
        assert report.max_logit_diff == pytest.approx(report.expected_diff, abs=1e-3) and report.agreement >= 0.9
