"""Checkpoints are tensors and JSON: they round-trip exactly, damage is named, and no pickle ever runs."""

import pickle

import pytest
import torch

from studio.errors import CheckpointError
from studio.training.checkpoint import LoopState, load_checkpoint, save_checkpoint, verify_checkpoint


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def trained(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=10)
    for _ in range(2):
        model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def test_save_then_load_restores_everything(tmp_path, trained):
    model, optimizer, scheduler = trained
    state = LoopState(step=2, best_eval_loss=1.5, best_step=2)
    best = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items() if k != "step"}
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, state, best)
    assert sorted(p.name for p in path.iterdir()) == [
        "adapter",
        "best_adapter.safetensors",
        "manifest.json",
        "optimizer.json",
        "optimizer.safetensors",
        "rng.safetensors",
        "scheduler.json",
        "state.json",
    ]
    saved_optimizer, saved_scheduler, rng = optimizer.state_dict(), scheduler.state_dict(), torch.get_rng_state()
    torch.rand(3)  # move the generator on; loading must put it back
    loaded_state, loaded_best = load_checkpoint(path, model, optimizer, scheduler)
    assert loaded_state == state and torch.equal(torch.get_rng_state(), rng)
    assert scheduler.state_dict() == saved_scheduler
    assert optimizer.state_dict()["param_groups"] == saved_optimizer["param_groups"]
    for index, values in saved_optimizer["state"].items():
        for name, value in values.items():
            assert torch.equal(optimizer.state_dict()["state"][index][name], value)
    assert all(torch.equal(loaded_best[k], v) for k, v in best.items())


def test_a_damaged_file_is_named(tmp_path, trained):
    path = save_checkpoint(tmp_path, *trained, LoopState(step=2), None)
    weights = path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="adapter_model.safetensors is damaged"):
        verify_checkpoint(path)
    (path / "state.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        verify_checkpoint(path)


def test_a_failed_save_leaves_no_partial_folder(tmp_path, trained, monkeypatch):
    model, optimizer, scheduler = trained
    monkeypatch.setattr(
        scheduler, "state_dict", lambda: {"unserialisable": object()}
    )  # fails mid-save, like a full disk
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, model, optimizer, scheduler, LoopState(step=3), None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the planted file is a plain pickle, not torch.save's
def test_a_legacy_checkpoint_with_a_pickled_payload_is_refused_and_never_runs(tmp_path, trained):
    path = save_checkpoint(tmp_path, *trained, LoopState(step=2), None)
    for name in ("manifest.json", "optimizer.safetensors", "optimizer.json", "scheduler.json", "rng.safetensors"):
        (path / name).unlink()  # the layout of checkpoints written before manifests
    marker = tmp_path / "payload-ran"
    (path / "optimizer.pt").write_bytes(pickle.dumps(_Payload(marker)))
    torch.save({"last_epoch": 2}, path / "scheduler.pt")
    torch.save(torch.get_rng_state(), path / "rng.pt")
    with pytest.raises(CheckpointError, match="optimizer.pt cannot be loaded safely"):
        verify_checkpoint(path)
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        load_checkpoint(path, *trained)
    assert not marker.exists()
