"""Data parallel with pictures on torchrun, on this CPU machine (gloo): the tiny Qwen2-VL, real worker processes.

The picture demo set mixed with a text set and packed small, so a forward pass holds a picture on one rank and none
on the other; the vision tower's blocks take LoRA and the projector trains whole (modules_to_save), both whole on
every rank with their gradients summed (sharding.py). Two processes train the curve and adapter of one, with DDP
and with FSDP; FSDP's adapter loads with its image processor, and its checkpoint resumes where the run left off.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.distributed  # torchrun with several processes (gloo)

PICTURES = {
    "name": "pictures",
    "quantization.method": "none",
    "training.precision": "fp32",
    "lora.dropout": "0",
    "data.datasets": "[shapes_zh_demo,alpaca_zh_demo]",
    "data.max_samples": "20",
    "data.val_size": "0.2",
    "training.micro_batch_tokens": "160",  # one or two examples a pass: 0 or 1 picture, rarely alike on both ranks
    "training.learning_rate": "5e-3",
    "training.max_steps": "3",
    "training.logging_steps": "1",
    "training.eval_steps": "2",
    "training.save_steps": "2",
    "training.gradient_checkpointing": "false",
    "finetuning.freeze_vision_tower": "false",
    "finetuning.freeze_multi_modal_projector": "false",
    "evaluation.watch_count": "1",
    "evaluation.watch_max_new_tokens": "4",
}


def _config(model_dir, **overrides: str):
    from studio.config import RunConfig

    return RunConfig().with_overrides({**PICTURES, "model.name_or_path": str(model_dir), **overrides})


def _finished(service, config) -> str:
    run = service.start(config)
    try:
        status = service.wait(run, timeout=300)
    finally:  # a run still going at the timeout would train beside the rest of the suite: stopped (no-op if ended)
        service.abort(run)
    assert status.state == "finished", service.folder(run).log_tail()
    return run


def _events(service, run_id, kind):
    return [e for e in service.read_events(run_id)[0] if e.type == kind]


def _adapter(service, run_id) -> dict[str, torch.Tensor]:
    return load_file(str(service.folder(run_id).adapter_dir / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_vl_model_dir):
    """The single-process run every two-process run is compared with: (service, run id)."""
    from studio.control.device_lock import DeviceLocks
    from studio.control.service import TrainingService

    folder = tmp_path_factory.mktemp("one-process")
    service = TrainingService(folder / "runs", locks=DeviceLocks(folder / "locks"))
    return service, _finished(service, _config(tiny_vl_model_dir, **{"training.devices": "1"}))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_with_pictures_train_the_curve_and_adapter_of_one(
    service, tiny_vl_model_dir, one_process, strategy
):
    single_service, one = one_process
    two = _finished(service, _config(tiny_vl_model_dir, **{"training.devices": "2", "distributed.strategy": strategy}))
    assert service.status(two).processes == 2
    steps = [
        [(s.step, s.loss) for s in _events(svc, run, "step")] for svc, run in ((single_service, one), (service, two))
    ]
    assert [step for step, _ in steps[1]] == [step for step, _ in steps[0]] == [1, 2, 3]
    assert [loss for _, loss in steps[1]] == pytest.approx([loss for _, loss in steps[0]], rel=1e-4)
    evals = [[e.eval_loss for e in _events(svc, run, "eval")] for svc, run in ((single_service, one), (service, two))]
    assert len(evals[0]) == 2 and evals[1] == pytest.approx(evals[0], rel=1e-4)
    single, parallel = _adapter(single_service, one), _adapter(service, two)
    assert single.keys() == parallel.keys()
    assert any(".visual.merger." in name for name in single) and any(".visual.blocks." in name for name in single)
    for name, weight in single.items():
        torch.testing.assert_close(parallel[name], weight, rtol=1e-4, atol=1e-5)
    logs = " ".join(e.message for e in _events(service, two, "log"))
    if strategy == "ddp":  # rank 0 watches with the whole model, the prompt's picture included
        assert _events(service, two, "watched")[0].rows[0].answer
    else:
        assert "vision tower, projector and output layer whole on each" in logs
        assert "No prompts watched" in logs and not _events(service, two, "watched")


def test_an_fsdp_adapter_with_pictures_loads_with_its_image_processor_and_its_checkpoint_resumes(
    service, tiny_vl_model_dir
):
    from peft import PeftModel
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    fsdp = {"training.devices": "2", "distributed.strategy": "fsdp", "evaluation.watch_count": "0"}
    run = _finished(service, _config(tiny_vl_model_dir, **fsdp))
    folder = service.folder(run).adapter_dir
    assert AutoImageProcessor.from_pretrained(folder).patch_size == 14
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_vl_model_dir), folder)
    loaded = {name: p for name, p in model.named_parameters() if "merger" in name and "modules_to_save" in name}
    saved = {name: w for name, w in _adapter(service, run).items() if ".visual.merger." in name}
    assert loaded and len(loaded) == len(saved)
    for name, weight in saved.items():  # the trained projector, not the base's
        kept = name.replace(".visual.merger.", ".visual.merger.modules_to_save.default.")
        torch.testing.assert_close(loaded[kept].detach(), weight)
    checkpoint = service.folder(run).checkpoints_dir / "checkpoint-2"
    resumed = _finished(
        service, _config(tiny_vl_model_dir, **fsdp, **{"training.resume_from_checkpoint": str(checkpoint)})
    )
    losses = [{s.step: s.loss for s in _events(service, r, "step")} for r in (run, resumed)]
    assert sorted(losses[1]) == [3] and losses[1][3] == pytest.approx(losses[0][3], rel=1e-4)
    for name, weight in _adapter(service, run).items():
        torch.testing.assert_close(_adapter(service, resumed)[name], weight, rtol=1e-4, atol=1e-5)
