"""training.auto_batch_size: the largest micro-batch the estimate fits into the free memory, and a run with it."""

import pytest

from studio.api import Studio
from studio.config import RunConfig
from studio.estimates.auto_batch import RESERVE, choose_micro_batch
from studio.memory_estimate import DataLengths, estimate_memory
from studio.runs.events import Log, Started, Step
from tests.support import quick_run

LENGTHS = DataLengths(mean=60, longest=200)


def _need(config: RunConfig, model_dir, **changes: str) -> float:
    changed = config.with_overrides(changes)
    return estimate_memory(changed, model_dir, device="cpu", processes=1, lengths=LENGTHS).total_gib


def test_padded_batches_take_the_largest_size_that_fits_and_keep_the_step(tiny_model_dir):
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "training.packing": "false",
            "training.batch_size": "1",
            "training.gradient_accumulation_steps": "8",
            "training.micro_batch_lanes": "1",
        }
    )
    # free memory between what batch 4 and batch 5 need, once the reserve is kept back
    free = (_need(config, tiny_model_dir, **{"training.batch_size": "4"}) + 1e-6) / (1 - RESERVE)
    assert _need(config, tiny_model_dir, **{"training.batch_size": "5"}) > free * (1 - RESERVE)
    choice = choose_micro_batch(config, tiny_model_dir, "cpu", LENGTHS, free)
    assert choice.changes == {"training.batch_size": "4", "training.gradient_accumulation_steps": "2"}
    assert "8 examples a step as configured" in choice.note

    odd = config.with_overrides({"training.gradient_accumulation_steps": "6"})
    choice = choose_micro_batch(odd, tiny_model_dir, "cpu", LENGTHS, free)
    assert choice.changes == {"training.batch_size": "4", "training.gradient_accumulation_steps": "2"}
    assert "8 examples a step instead of 6" in choice.note  # 4 does not divide 6: said so

    two_lanes = config.with_overrides({"training.micro_batch_lanes": "2"})  # each lane keeps a micro-batch to do
    choice = choose_micro_batch(two_lanes, tiny_model_dir, "cpu", LENGTHS, free_gib=100.0)
    assert choice.changes == {"training.batch_size": "4", "training.gradient_accumulation_steps": "2"}


def test_packed_batches_grow_in_tokens_up_to_a_whole_step(tiny_model_dir):
    config = RunConfig().with_overrides({"model.name_or_path": str(tiny_model_dir), "training.batch_size": "16"})
    plenty = choose_micro_batch(config, tiny_model_dir, "cpu", LENGTHS, free_gib=100.0)
    # a step holds 16 x 2 x 60 = 1920 tokens: 2048 per forward pass holds it, more would change nothing
    assert plenty.changes == {"training.micro_batch_tokens": "2048"}
    tight = _need(config, tiny_model_dir, **{"training.micro_batch_tokens": "256"}) / (1 - RESERVE) + 1e-6
    assert choose_micro_batch(config, tiny_model_dir, "cpu", LENGTHS, tight).changes == {
        "training.micro_batch_tokens": "256"
    }


def test_a_run_with_auto_batch_size_trains_with_the_chosen_batch(tmp_path, locks, tiny_model_dir):
    studio = Studio(tmp_path / "runs", locks=locks)
    config = RunConfig().with_overrides(
        {
            **quick_run(tiny_model_dir),
            "training.auto_batch_size": "true",
            "training.packing": "false",
            "training.batch_size": "1",
            "training.gradient_accumulation_steps": "4",
            "training.max_steps": "3",
            "training.eval_steps": "100",
        }
    )
    run_id = studio.start(config)
    assert studio.wait(run_id, timeout=300).state == "finished"
    events = studio.events(run_id)[0]
    (chosen,) = [e.message for e in events if isinstance(e, Log) and "auto_batch_size" in e.message]
    # the machine has far more RAM than the tiny model needs: a step's 4 examples in one micro-batch for each of
    # the CPU's two lanes
    assert "micro-batches of 2 examples (was 1), gradient accumulation 2 (4 examples a step" in chosen
    assert next(e for e in events if isinstance(e, Started)).total_steps == 3
    assert [e.step for e in events if isinstance(e, Step)] == [1, 2, 3]


@pytest.mark.parametrize("processes", [2])
def test_several_processes_keep_the_configured_batch(tiny_model_dir, processes):
    from studio.estimates.auto_batch import pick_for_worker

    config = RunConfig().with_overrides({"model.name_or_path": str(tiny_model_dir)})
    kept, note = pick_for_worker(config, tiny_model_dir, "cpu", [], processes)
    assert kept == config and "kept the configured batch" in note
