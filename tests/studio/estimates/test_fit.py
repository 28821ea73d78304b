"""Will it fit: the estimate against free memory, and only the suggestions that apply (and save memory)."""

import json

import pytest

from studio.config import RunConfig
from studio.control.devices import DevicePlan
from studio.estimates.fit import CHANGES, check_fit
from studio.estimates.free_memory import DeviceMemory
from studio.memory_estimate import DataLengths, estimate_memory
from tests.studio.test_memory_estimate import QWEN_1_8B

CPU = DevicePlan("cpu")
GPU = DevicePlan("cuda", (0,), 1)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """Qwen1.5-1.8B's config.json alone: sizes worth suggesting about, nothing downloaded."""
    folder = tmp_path_factory.mktemp("qwen1.5-1.8b-arch")
    (folder / "config.json").write_text(json.dumps(QWEN_1_8B))
    return folder


def _free(gib: float, device: str = "cpu") -> list[DeviceMemory]:
    return [DeviceMemory(device, "test device", gib, 64.0)]


def test_a_run_that_fits_says_how_much_is_spare_and_suggests_nothing(qwen_dir):
    config = RunConfig().with_overrides({"training.devices": "cpu"})
    report = check_fit(config, qwen_dir, CPU, _free(60.0))
    need = estimate_memory(config, qwen_dir, device="cpu", processes=1).total_gib
    assert report.fits and report.suggestions == []
    assert report.devices[0].need_gib == pytest.approx(need)
    assert report.devices[0].spare_gib == pytest.approx(60.0 - need)
    said = report.describe()
    assert "fits" in said and "to spare" in said and "放得下" in said.text("zh")


def test_a_run_that_falls_short_says_by_how_much_and_what_to_try(qwen_dir):
    config = RunConfig().with_overrides({"training.devices": "cpu", "training.gradient_checkpointing": "off"})
    report = check_fit(config, qwen_dir, CPU, _free(1.0))
    assert not report.fits and report.suggestions
    said = report.describe()
    assert "more" in said and "try" in said and "还差" in said.text("zh")
    need = report.estimate.total_gib
    for suggestion in report.suggestions:  # each one, applied, is estimated smaller by what it says
        changed = estimate_memory(config.with_overrides(suggestion.changes), qwen_dir, device="cpu", processes=1)
        assert need - changed.total_gib == pytest.approx(suggestion.saves_gib)
    saved = [s.saves_gib for s in report.suggestions]
    assert saved == sorted(saved, reverse=True)


def _offered(config: RunConfig, plan: DevicePlan, qwen_dir, lengths=None) -> set[str]:
    import studio.estimates.fit as fit

    before, fit.MAX_SUGGESTIONS = fit.MAX_SUGGESTIONS, len(CHANGES)  # every applicable one, not the best three
    try:
        report = check_fit(config, qwen_dir, plan, _free(0.01, "cuda:0" if plan.kind == "cuda" else "cpu"), lengths)
    finally:
        fit.MAX_SUGGESTIONS = before
    return {suggestion.key.removeprefix("estimate.try_") for suggestion in report.suggestions}


def test_suggestions_are_the_ones_that_apply_to_the_config(qwen_dir):
    plain = RunConfig().with_overrides(
        {
            "quantization.method": "none",
            "training.gradient_checkpointing": "off",
            "training.batch_size": "4",
            "training.packing": "false",
        }
    )
    offered = _offered(plain, CPU, qwen_dir)
    assert {"4bit", "checkpointing", "batch_1", "cutoff", "one_lane"} <= offered
    assert "lora" not in offered  # already an adapter
    assert "micro_batch_tokens" not in offered  # padded batches are sized by batch_size

    lean = plain.with_overrides(
        {"quantization.method": "4bit", "training.gradient_checkpointing": "on", "training.batch_size": "1"}
    )
    offered = _offered(lean, CPU, qwen_dir)
    assert not {"4bit", "checkpointing", "batch_1"} & offered

    full = plain.with_overrides({"finetuning.method": "full"})
    offered = _offered(full, CPU, qwen_dir)
    assert "lora" in offered and "4bit" not in offered  # a whole model trains unquantised

    on_gpu = RunConfig()  # 4-bit on CUDA by default ('auto'), checkpointing on, packed
    offered = _offered(on_gpu, GPU, qwen_dir)
    assert "4bit" not in offered and "checkpointing" not in offered and "one_lane" not in offered
    assert "micro_batch_tokens" in offered


def test_batch_1_keeps_the_examples_of_a_step(qwen_dir):
    config = RunConfig().with_overrides(
        {"training.batch_size": "4", "training.gradient_accumulation_steps": "3", "training.packing": "false"}
    )
    one = {"training.batch_size": "1", "training.gradient_accumulation_steps": "12"}
    assert CHANGES["estimate.try_batch_1"](config, "cpu") == one
    assert "batch_1" in _offered(config, CPU, qwen_dir)


def test_the_estimate_grows_with_the_batch_when_the_data_is_short(qwen_dir):
    """Packed micro-batches hold no more than a step's examples: with short examples the batch size counts."""
    short = DataLengths(mean=100, longest=300)
    needs = [
        check_fit(
            RunConfig().with_overrides({"training.batch_size": str(b)}), qwen_dir, CPU, _free(60), short
        ).estimate.total_gib
        for b in (1, 2, 4)
    ]
    assert needs[0] < needs[1] < needs[2]
    padded = RunConfig().with_overrides({"training.packing": "false", "training.batch_size": "8"})
    longer = check_fit(padded, qwen_dir, CPU, _free(60), DataLengths(mean=100, longest=600)).estimate
    assert longer.total_gib > check_fit(padded, qwen_dir, CPU, _free(60), short).estimate.total_gib
