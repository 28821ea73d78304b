"""LLaMA-Factory's tokenizer fix done by the studio (a template's end token and stop words become special tokens),
model.resize_vocab growing the embeddings to the tokenizer, and a tokenizer too large for the model refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors.torch import load_file

from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
from studio.modeling.compute import resolve_plan
from studio.modeling.loader import load_base_model, load_tokenizer
from studio.modeling.sources import ModelLoadError
from studio.modeling.vocab import extra_trainable_modules, fix_special_tokens, resize_embeddings
from tests.support import run_worker

PLAN = resolve_plan(QuantizationConfig(method="none"), TrainingConfig(precision="fp32"), cuda=False)


def _llama3(model_dir, **settings) -> ModelConfig:
    return ModelConfig(name_or_path=str(model_dir), chat_template="llama3", **settings)


def test_llama3_stop_words_become_single_tokens(tiny_model_dir, tiny_tokenizer):
    assert len(tiny_tokenizer.encode("<|eot_id|>", add_special_tokens=False)) > 1  # the tiny vocabulary lacks it
    lines = []
    tokenizer = load_tokenizer(_llama3(tiny_model_dir), str(tiny_model_dir), info=lines.append)
    size = len(tiny_tokenizer)
    assert tokenizer.encode("<|eot_id|>", add_special_tokens=False) == [size]
    assert tokenizer.encode("<|eom_id|>", add_special_tokens=False) == [size + 1]
    assert tokenizer.eos_token == "<|eot_id|>" and tokenizer.eos_token_id == size  # replace_eos, as LLaMA-Factory
    assert tokenizer.pad_token == "<|endoftext|>"  # the tokenizer's own padding token stays
    assert any("<|im_end|> → <|eot_id|>" in line for line in lines)
    assert any("<|eom_id|> (id 2001)" in line for line in lines)
    assert any("Ids 2000-2001 are new to the model" in line for line in lines)
    turns = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "好"}]
    ids = tokenizer.encode(tokenizer.apply_chat_template(turns, tokenize=False), add_special_tokens=False)
    assert ids.count(size) == 2  # each turn ends with <|eot_id|>, one id


def test_a_tokenizer_without_end_or_padding_token_gets_llamafactorys(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.eos_token = tokenizer.pad_token = None
    lines = fix_special_tokens(tokenizer, None)
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert len(tokenizer) == len(tiny_tokenizer) and lines  # a known token: nothing added, the change said


def test_a_tokenizer_beyond_the_embedding_is_refused_without_resize_vocab(tiny_model_dir):
    config = _llama3(tiny_model_dir)
    tokenizer = load_tokenizer(config, str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="model.resize_vocab") as refused:
        load_base_model(config, str(tiny_model_dir), PLAN, tokenizer=tokenizer)
    assert "<|eot_id|>, <|eom_id|>" in str(refused.value) and "2000" in str(refused.value)
    # the same ids without the check crash the forward pass, which is what the refusal saves the user from
    plain = load_base_model(config, str(tiny_model_dir), PLAN)
    with pytest.raises(IndexError):
        plain(torch.tensor([[1, tokenizer.eos_token_id]]))


def test_resize_vocab_grows_the_embedding_to_the_tokenizer(tiny_model_dir):
    config = _llama3(tiny_model_dir, resize_vocab=True)
    tokenizer = load_tokenizer(config, str(tiny_model_dir))
    before = load_base_model(config, str(tiny_model_dir), PLAN).get_input_embeddings().weight.detach().clone()
    lines = []
    torch.manual_seed(0)
    model = load_base_model(config, str(tiny_model_dir), PLAN, tokenizer=tokenizer, info=lines.append)
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape[0] == 2048 == model.config.vocab_size  # 2002 ids, padded to a multiple of 64
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    assert torch.equal(weight[:2000], before)
    new = weight[2000:]
    # each new row: the old rows' mean plus N(0, 1/sqrt(width)) noise
    assert torch.allclose(new.mean(dim=0), before.mean(dim=0), atol=4 / math.sqrt(64 * 48))
    assert new.sub(before.mean(dim=0)).std().item() == pytest.approx(1 / math.sqrt(64), rel=0.1)
    assert any("from 2,000 to 2,048 rows" in line for line in lines)
    logits = model(torch.tensor([[1, tokenizer.eos_token_id]])).logits
    assert logits.shape[-1] == 2048 and torch.isfinite(logits).all()


def test_resizing_an_untied_output_layer_initialises_it_too():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    head = model.get_output_embeddings().weight.detach().clone()
    assert resize_embeddings(model, 130) == 192
    grown = model.get_output_embeddings().weight.detach()
    assert grown.shape == (192, 32) and torch.equal(grown[:100], head)
    assert torch.allclose(grown[100:].mean(dim=0), head.mean(dim=0), atol=4 / math.sqrt(32 * 92))
    assert not torch.equal(grown[100:], model.get_input_embeddings().weight.detach()[100:])  # drawn apart


def test_resize_vocab_keeps_a_model_that_already_fits(tiny_model_dir, tiny_tokenizer):
    config = ModelConfig(name_or_path=str(tiny_model_dir), resize_vocab=True)
    lines = []
    model = load_base_model(config, str(tiny_model_dir), PLAN, tokenizer=tiny_tokenizer, info=lines.append)
    assert model.get_input_embeddings().weight.shape[0] == 2000
    assert any("keeps its size" in line for line in lines)


def test_resize_vocab_names_the_layers_lora_trains_in_full(tiny_model_dir):
    model = load_base_model(ModelConfig(name_or_path=str(tiny_model_dir)), str(tiny_model_dir), PLAN)
    assert extra_trainable_modules(ModelConfig(), model) == []
    assert extra_trainable_modules(ModelConfig(resize_vocab=True), model) == ["embed_tokens", "lm_head"]
    assert extra_trainable_modules(ModelConfig(resize_vocab=True)) == ["embed_tokens", "lm_head"]


def test_a_run_with_new_stop_words_trains_with_resize_vocab_and_is_refused_without(tmp_path, tiny_model_dir):
    llama3 = {"model.chat_template": "llama3", "training.max_steps": "2", "training.eval_steps": "2"}
    folder, events = run_worker(tmp_path / "refused", tiny_model_dir, expect_exit=1, **llama3)
    (failed,) = [e for e in events if e.type == "failed"]
    assert "model.resize_vocab" in failed.error and "<|eot_id|>" in failed.error
    resized = {"model.resize_vocab": "true", "model.rope_scaling": "linear", "model.rope_factor": "2"}
    folder, events = run_worker(tmp_path / "resized", tiny_model_dir, **llama3, **resized)
    messages = [e.message for e in events if e.type == "log"]
    assert any("from 2,000 to 2,048 rows" in m for m in messages)
    assert "RoPE scaling linear ×2: 2,048 pretrained positions stretched to 4,096." in messages  # and RoPE's reach
    assert any("<|im_end|> → <|eot_id|>" in m for m in messages)
    losses = [e.loss for e in events if e.type == "step"]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    # the resized embedding trained beside the adapter (its new rows would stay random otherwise), saved with it
    saved = load_file(folder.adapter_dir / "adapter_model.safetensors")
    embeddings = [tensor for name, tensor in saved.items() if "embed_tokens" in name]
    assert embeddings and all(tensor.shape[0] == 2048 for tensor in embeddings)
