"""Decoding in which finished rows leave the batch gives generate's answers, row by row (greedy, fp32)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from studio.config import GenerationConfig
from studio.modeling.decode import decode

QUESTIONS = ["你好", "为什么天空是蓝色的？请详细解释一下原因。", "1+1", "写一首关于猫的诗"]
GREEDY = GenerationConfig(temperature=0, max_new_tokens=24, repetition_penalty=1.1)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    return tokenizer


def _lively(model):
    """The tiny model's own weights repeat one token forever; larger random weights give varied answers."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.eval()


def _batch(tokenizer):
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _generate(model, batch, stop: int, **kwargs) -> list[list[int]]:
    with torch.inference_mode():
        out = model.generate(
            **batch,
            do_sample=False,
            repetition_penalty=1.1,
            max_new_tokens=24,
            eos_token_id=stop,
            pad_token_id=stop,
            temperature=None,
            top_p=None,
            top_k=None,
            **kwargs,
        )
    rows = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        rows.append(row[: row.index(stop)] if stop in row else row)
    return rows


def _a_token_that_ends_some_rows(model, batch) -> int:
    """A token some rows generate early and others not: then rows finish at different steps."""
    with torch.inference_mode():
        free = model.generate(
            **batch,
            do_sample=False,
            repetition_penalty=1.1,
            max_new_tokens=24,
            pad_token_id=0,
            temperature=None,
            top_p=None,
            top_k=None,
        )[:, batch["input_ids"].shape[1] :].tolist()
    for token in {t for row in free for t in row}:
        first = {row.index(token) if token in row else len(row) for row in free}
        if len(first) > 2 and min(first) > 0:
            return token
    pytest.fail("no token ends the rows at different steps")


def test_greedy_answers_equal_generate_while_rows_finish_at_different_steps(tiny_model_dir, tokenizer):
    model = _lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    batch = _batch(tokenizer)
    stop = _a_token_that_ends_some_rows(model, batch)
    finished = []
    with torch.inference_mode():
        ours = decode(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            GREEDY,
            {stop},
            on_done=lambda row, tokens: finished.append((row, len(tokens))),
        )
    assert ours == _generate(model, batch, stop)
    assert len({length for _, length in finished}) > 1 and sorted(row for row, _ in finished) == [0, 1, 2, 3]


def test_mixed_adapter_rows_equal_generate(tiny_model_dir, tokenizer, strong_adapter):
    from peft import PeftModel

    model = PeftModel.from_pretrained(
        _lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir)), str(strong_adapter), adapter_name="strong"
    ).eval()
    batch = _batch(tokenizer)
    names = ["__base__", "strong", "__base__", "strong"]
    stop = _a_token_that_ends_some_rows(model, batch)
    with torch.inference_mode():
        ours = decode(model, batch["input_ids"], batch["attention_mask"], GREEDY, {stop}, adapter_names=names)
    assert ours == _generate(model, batch, stop, adapter_names=names)
    assert ours[0] != ours[1]  # the adapter rows really ran with the adapter


def test_copies_of_a_prompt_run_once_sample_what_rows_of_their_own_would(tiny_model_dir, tokenizer):
    model = _lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    batch = _batch(tokenizer)
    copies = torch.tensor([0, 0, 0, 2, 2, 3])
    sampled = GenerationConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=12, repetition_penalty=1.1)
    with torch.inference_mode():
        shared = decode(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            sampled,
            set(),
            generator=torch.Generator().manual_seed(3),
            copies=copies,
        )
        own_rows = decode(
            model,
            batch["input_ids"][copies],
            batch["attention_mask"][copies],
            sampled,
            set(),
            generator=torch.Generator().manual_seed(3),
        )
    assert shared == own_rows and len(shared) == 6
    assert len({tuple(answer) for answer in shared[:3]}) > 1  # sampled: one prompt's answers differ


def test_the_narrow_head_gives_the_heads_logits_and_leaves_the_model_as_it_was(tiny_model_dir, tokenizer):
    from studio.modeling.decode import narrow_head

    model = _lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    batch = _batch(tokenizer)
    with torch.inference_mode():
        plain = model(**batch, logits_to_keep=1).logits
        with narrow_head(model):
            assert "forward" in vars(model.get_output_embeddings())
            narrow = model(**batch, logits_to_keep=1).logits
            every_position = model(**batch).logits  # more rows than the narrow form takes
    assert torch.allclose(narrow, plain, atol=1e-5)
    assert torch.allclose(every_position[:, -1:], plain, atol=1e-5)
    assert "forward" not in vars(model.get_output_embeddings())
