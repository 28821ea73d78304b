"""Answers watched during training: the training worker itself answers the watched prompts greedily at every
evaluation and streams them; the run history keeps them for the Train tab and Compare runs."""

from studio.runs.history import RunHistory
from tests.support import run_worker


def test_the_first_validation_prompts_are_answered_at_every_evaluation(tmp_path, tiny_model_dir):
    folder, events = run_worker(tmp_path / "run", tiny_model_dir, **{"evaluation.watch_max_new_tokens": "5"})
    evals = [e.step for e in events if e.type == "eval"]
    watched = [e for e in events if e.type == "watched"]
    assert [w.step for w in watched] == evals == [2, 4]
    for event in watched:
        assert len(event.rows) == 3 and all(row.prompt and row.reference for row in event.rows)
    # the same prompts each time: what changes is the answer
    assert [r.prompt for r in watched[0].rows] == [r.prompt for r in watched[1].rows]
    assert any("Watched 3 prompts at step 2" in e.message for e in events if e.type == "log")
    history = RunHistory(folder.run_id).update(events, len(events))
    assert [w.step for w in history.watched] == [2, 4]


def test_own_prompts_replace_the_validation_ones_and_zero_turns_watching_off(tmp_path, tiny_model_dir):
    _, events = run_worker(
        tmp_path / "own",
        tiny_model_dir,
        **{"evaluation.watch_prompts": "[你好, 1+1 等于几？]", "training.max_steps": "2"},
    )
    (watched,) = [e for e in events if e.type == "watched"]
    assert [row.prompt for row in watched.rows] == ["你好", "1+1 等于几？"] and watched.rows[0].reference is None
    _, events = run_worker(
        tmp_path / "off", tiny_model_dir, **{"evaluation.watch_count": "0", "training.max_steps": "2"}
    )
    assert not [e for e in events if e.type == "watched"]


def test_a_4bit_bf16_run_watches_under_its_own_compute(tmp_path, tiny_model_dir):
    """Watching decodes outside the trainer's lanes: it must set the run's autocast itself (bf16 activations meet
    fp32 LoRA weights otherwise)."""
    _, events = run_worker(
        tmp_path / "4bit",
        tiny_model_dir,
        **{"quantization.method": "4bit", "training.precision": "bf16", "training.max_steps": "2"},
    )
    assert [e.step for e in events if e.type == "watched"] == [2]
