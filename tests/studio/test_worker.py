"""The worker as users run it: a real subprocess training the tiny model with 4-bit QLoRA on CPU."""

import json
import subprocess
import sys

import pytest

from studio.runs.events import TERMINAL, Finished
from studio.runs.folder import RunFolder
from tests.support import run_worker


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    from studio.config import RunConfig

    folder = RunFolder(tmp_path_factory.mktemp("runs") / "qlora")
    folder.path.mkdir()
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "4bit",
            "data.max_samples": "40",
            "training.learning_rate": "1e-2",
            "training.max_steps": "20",
            "training.logging_steps": "1",
            "training.eval_steps": "10",
            "training.save_steps": "10",
            "training.gradient_checkpointing": "true",
        }
    )
    config.save(folder.config_file)
    result = subprocess.run(
        [sys.executable, "-m", "studio.worker", str(folder.path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_every_line_is_a_valid_event_and_exactly_one_is_terminal(finished_run):
    raw_lines = finished_run.events_file.read_text().splitlines()
    events, _ = finished_run.read_events()
    assert len(events) == len(raw_lines)  # parse_event validated every line against the schema
    assert [type(e) for e in events if isinstance(e, TERMINAL)] == [Finished]
    assert isinstance(events[-1], Finished)


def test_four_bit_qlora_ran_and_the_loss_went_down(finished_run):
    events, _ = finished_run.read_events()
    [started] = [e for e in events if e.type == "started"]
    assert started.method.startswith("QLoRA 4-bit NF4") and started.device == "cpu"
    assert 0 < started.trainable_params < started.total_params
    steps = [e for e in events if e.type == "step"]
    assert [s.step for s in steps] == list(range(1, 21))
    first, last = sum(s.loss for s in steps[:3]) / 3, sum(s.loss for s in steps[-3:]) / 3
    assert last < first - 0.05, (first, last)
    assert all(s.tokens_per_second > 0 and s.rss_mib > 0 for s in steps)
    assert steps[-1].eta_s == 0
    evals = [e for e in events if e.type == "eval"]
    assert [e.step for e in evals] == [10, 20] and evals[-1].eval_loss < evals[0].eval_loss
    assert finished_run.read_status().state == "finished"


def test_checkpoints_and_a_plain_peft_adapter(finished_run, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (finished_run.checkpoints_dir / "checkpoint-10" / "state.json").is_file()
    adapter = finished_run.adapter_dir
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 30]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter)
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_validation_split_is_kept_for_evaluation(finished_run):
    lines = finished_run.val_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6  # 10% of the 56 distinct examples (40 demo + 16 identity, drawn more than once)


def test_worker_refuses_a_folder_without_config(tmp_path):
    result = subprocess.run([sys.executable, "-m", "studio.worker", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "not a run folder" in result.stderr


def test_kto_streams_rewards_and_kl(tmp_path, tiny_model_dir):
    _, events = run_worker(
        tmp_path / "kto", tiny_model_dir, **{"training.stage": "kto", "data.datasets": "[kto_zh_demo]"}
    )
    steps = [e for e in events if e.type == "step"]
    assert steps[0].loss == pytest.approx(0.5, abs=1e-3)  # 1 - sigmoid(0) while the adapter equals its reference
    train = [e for e in events if e.type == "preference" and e.split == "train"]
    assert len(train) == 4 and all(e.kl is not None and e.kl >= 0 for e in train)


@pytest.mark.parametrize("loss,beta", [("orpo", "0.1"), ("simpo", "2.0")])
def test_reference_free_dpo_losses_learn_without_a_reference_pass(tmp_path, tiny_model_dir, loss, beta):
    dpo = {"training.stage": "dpo", "data.datasets": "[dpo_zh_demo]", "preference.loss": loss, "preference.beta": beta}
    _, events = run_worker(tmp_path / loss, tiny_model_dir, **dpo)
    assert not any(e.type == "phase" and e.name == "reference" for e in events)
    assert any(f"{loss} DPO loss" in getattr(e, "message", "") and "no reference model" in e.message for e in events)
    first, last = [e for e in events if e.type == "eval"]  # at steps 2 and 4, on the same validation pairs
    assert last.eval_loss < first.eval_loss
    margins = [e.reward_margin for e in events if e.type == "preference" and e.split == "eval"]
    assert margins[-1] > margins[0] > 0


def test_pretraining_learns_raw_text_and_evaluates_it(tmp_path, tiny_model_dir):
    folder, events = run_worker(
        tmp_path / "pt",
        tiny_model_dir,
        **{"training.stage": "pt", "data.datasets": "[text_zh_demo]", "data.cutoff_len": "64", "data.val_size": "0.2"},
    )
    steps, evals = [e for e in events if e.type == "step"], [e for e in events if e.type == "eval"]
    assert len(steps) == 4 and steps[-1].loss < steps[0].loss and len(evals) == 2
    assert not any(e.type == "preference" for e in events)
    assert all("text" in json.loads(line) for line in folder.val_file.read_text(encoding="utf-8").splitlines())


def test_dpo_continues_an_sft_adapter_against_it_or_the_base(tmp_path, tiny_model_dir):
    import math

    sft, _ = run_worker(tmp_path / "sft", tiny_model_dir)
    dpo = {"training.stage": "dpo", "data.datasets": "[dpo_zh_demo]", "lora.init_adapter": str(sft.adapter_dir)}
    _, initial = run_worker(tmp_path / "dpo-initial", tiny_model_dir, **dpo)
    _, base = run_worker(tmp_path / "dpo-base", tiny_model_dir, **dpo, **{"preference.reference": "base"})
    first = {
        name: next(e for e in events if e.type == "preference")
        for name, events in (("initial", initial), ("base", base))
    }
    assert [e for e in initial if e.type == "step"][0].loss == pytest.approx(math.log(2), abs=1e-3)
    assert first["initial"].reward_margin == pytest.approx(0, abs=1e-4)
    assert abs(first["base"].rewards_chosen) > 1e-3  # the SFT adapter already differs from the base
    assert any("Continuing the adapter" in getattr(e, "message", "") for e in initial)
