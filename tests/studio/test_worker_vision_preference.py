"""DPO and KTO with pictures through the real worker process on the tiny Qwen2-VL and the picture demo sets: the runs
say which layout they use, log preference metrics whose margin moves, and Evaluate scores a dpo run's held-out pairs
with their pictures."""

from __future__ import annotations

import math

import pytest

from tests.support import run_worker

SETTINGS = {
    "data.val_size": "0.2",
    "training.precision": "fp32",
    "evaluation.watch_count": "0",
}


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, tiny_vl_model_dir):
    dpo = {**SETTINGS, "training.stage": "dpo", "data.datasets": "[shapes_zh_dpo_demo]"}
    return run_worker(tmp_path_factory.mktemp("runs") / "dpo", tiny_vl_model_dir, **dpo)


def test_a_dpo_run_with_pictures_learns_to_prefer(dpo_run):
    _, events = dpo_run
    layout = next(e.message for e in events if e.type == "log" and e.message.startswith("Batches:"))
    assert "3-D rotary positions" in layout and "Pairs: prompt and any pictures it shows run with each answer" in layout
    assert any(e.type == "phase" and e.name == "reference" for e in events)
    losses = [e.loss for e in events if e.type == "step"]
    train = [e for e in events if e.type == "preference" and e.split == "train"]
    assert len(losses) == len(train) == 4 and losses[0] == pytest.approx(math.log(2), abs=1e-5)
    # the first step's policy is the reference, computed in other batches than the step's: equal up to rounding
    assert abs(train[0].reward_margin) < 1e-5 and train[-1].reward_margin > 0 and losses[-1] < losses[0]
    evaluated = [e for e in events if e.type == "preference" and e.split == "eval"]
    assert [e.step for e in evaluated] == [2, 4] and evaluated[-1].reward_margin > 0
    assert events[-1].type == "finished"


def test_a_dpo_run_with_pictures_is_evaluated_with_its_pictures(dpo_run):
    """Evaluate on the run's held-out pairs (val.jsonl: their prompts carry their pictures): rewards against the base,
    and the log-probabilities scored are those of the pictures shown (another picture changes them)."""
    import dataclasses

    from studio.chat.engine import ChatEngine
    from studio.evaluation import kinds
    from studio.evaluation.runner import evaluate

    folder, _ = dpo_run
    config = folder.load_config().with_overrides(
        {"evaluation.max_samples": "3", "generation.max_new_tokens": "4", "evaluation.batch_size": "3"}
    )
    engine = ChatEngine()
    report = evaluate(engine, config, str(folder.adapter_dir), compare=True)
    assert report.kind == "pairwise" and report.columns == ["base", folder.adapter_dir.parent.name]
    assert report.metrics["base"]["reward_margin"] == 0.0  # the base is the reference
    adapter = report.metrics[report.columns[1]]
    assert adapter["rewards_chosen"] != 0.0 and 0.0 <= adapter["reward_accuracy"] <= 1.0
    assert len(report.samples) == 3 and all(any(turn.get("images") for turn in s.prompt) for s in report.samples)
    examples, _, kind = kinds.load_scored_examples(config, str(folder.adapter_dir))
    encoder = engine.pictures.training.encoder(engine.tokenizer)
    documents, _ = kinds._documents(engine.tokenizer, examples[:2], kind, config.data.cutoff_len, encoder)
    assert all(document.images for document in documents)
    shown = engine.answer_logps(documents[:1], None, batch_size=1)
    other = dataclasses.replace(documents[0], images=documents[2].images)  # another 112x112 picture
    assert documents[2].images != documents[0].images
    assert shown != engine.answer_logps([other], None, batch_size=1)


def test_a_kto_run_with_pictures_streams_rewards_and_kl(tmp_path, tiny_vl_model_dir):
    kto = {**SETTINGS, "training.stage": "kto", "data.datasets": "[shapes_zh_kto_demo]"}
    _, events = run_worker(tmp_path / "kto", tiny_vl_model_dir, **kto)
    layout = next(e.message for e in events if e.type == "log" and e.message.startswith("Batches:"))
    assert "3-D rotary positions" in layout and "KTO loss" in layout
    train = [e for e in events if e.type == "preference" and e.split == "train"]
    assert len(train) == 4 and all(e.kl is not None for e in train)
    assert train[-1].reward_margin != train[0].reward_margin and events[-1].type == "finished"
