"""Every optimizer learns and resumes exactly; GaLore's updates have its rank, BAdam's touch one block; every
schedule follows transformers' curve through the studio's config."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from studio.config import LoraConfig, OptimizerConfig, TrainingConfig
from studio.errors import StudioError
from studio.training.checkpoint import LoopState, load_checkpoint, save_checkpoint
from studio.training.optimizers import build_optimizer, build_scheduler

NAMES = ["adamw", "adamw_8bit", "adafactor", "galore", "apollo", "badam"]


def _model(tiny_model_dir, lora: bool = False):
    """The tiny model, every weight trainable in fp32; `lora`: a rank-8 adapter instead (what checkpoints save)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return get_peft_model(model, PeftLoraConfig(r=8, target_modules="all-linear")) if lora else model


def _batch(step: int) -> torch.Tensor:
    return torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(step))


def _step(model, optimizer, scheduler, step: int) -> float:
    ids = _batch(step)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _built(model, name: str, warmup: int = 1, **options):
    training = TrainingConfig(learning_rate=3e-3, warmup_steps=warmup)
    optimizer = build_optimizer(model, training, OptimizerConfig(name=name, **options), LoraConfig())
    return optimizer, build_scheduler(optimizer, training, total_steps=20)


@pytest.mark.parametrize("name", NAMES)
def test_each_optimizer_lowers_the_loss_of_the_whole_model(tiny_model_dir, name):
    model = _model(tiny_model_dir)
    optimizer, scheduler = _built(model, name, galore_rank=4, apollo_rank=4, badam_switch_interval=1)
    losses = [_step(model, optimizer, scheduler, step=0) for _ in range(6)]  # the same batch: it must learn it
    assert losses[-1] < losses[0] - 0.3, losses


def test_adamw_on_a_cpu_is_fused_and_steps_as_the_plain_loop(tiny_model_dir):
    """Fused: one pass per weight (full fine-tuning's step, 135M weights, was several times slower as a loop)."""
    fused_model, loop_model = _model(tiny_model_dir), _model(tiny_model_dir)
    fused, fused_schedule = _built(fused_model, "adamw")
    assert fused.defaults["fused"]
    loop = torch.optim.AdamW(loop_model.parameters(), lr=3e-3, weight_decay=0.0, foreach=False)
    loop_schedule = build_scheduler(loop, TrainingConfig(learning_rate=3e-3, warmup_steps=1), total_steps=20)
    for step in range(3):
        _step(fused_model, fused, fused_schedule, step)
        _step(loop_model, loop, loop_schedule, step)
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_galore_moves_a_target_weight_within_galore_rank(tiny_model_dir):
    model = _model(tiny_model_dir)
    target = model.model.layers[0].self_attn.q_proj.weight  # 64 x 64, a linear layer's weight
    other = model.model.embed_tokens.weight  # an embedding: not a linear layer, plain AdamW
    before = {id(p): p.detach().clone() for p in (target, other)}
    optimizer, scheduler = _built(model, "galore", warmup=0, galore_rank=2)
    for step in range(3):
        _step(model, optimizer, scheduler, step)
    moved = target.detach() - before[id(target)]
    assert moved.abs().max() > 0
    assert torch.linalg.matrix_rank(moved) <= 2  # every step's update lies in the same rank-2 subspace
    assert torch.linalg.matrix_rank(other.detach() - before[id(other)]) > 2


def test_badam_updates_only_the_active_block(tiny_model_dir):
    model = _model(tiny_model_dir)
    optimizer, scheduler = _built(model, "badam", warmup=0, badam_switch_interval=1, badam_switch_mode="ascending")
    for active in (0, 1, 0):  # two layers: one block each, in turn
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        _step(model, optimizer, scheduler, step=active)
        changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
        layers = {name.split(".")[2] for name in changed if name.startswith("model.layers.")}
        assert layers == {str(active)}
        assert "model.embed_tokens.weight" not in changed  # embeddings (and the tied output layer) are not trained
        assert "model.norm.weight" in changed  # weights outside the layers train at every step
        inactive = [p for name, p in model.named_parameters() if name.startswith(f"model.layers.{1 - active}.")]
        assert all(p.requires_grad for p in inactive)  # trained weights stay requires_grad (checkpoints go by it)


def test_badam_random_order_follows_the_run_seed_not_torch_generator(tiny_model_dir):
    """Every process of a data-parallel run must pick the same block, whatever else each drew from torch."""

    def order(draws: int) -> list[int]:
        model = _model(tiny_model_dir)
        optimizer, scheduler = _built(model, "badam", badam_switch_interval=1, badam_switch_mode="random")
        blocks = []
        for step in range(6):
            torch.rand(draws)  # another process draws a different amount
            blocks.append(optimizer.active_block)
            _step(model, optimizer, scheduler, step)
        return blocks

    first = order(1)
    assert first == order(7) and sorted(first[:2]) == sorted(first[2:4]) == [0, 1]  # each round: both blocks


@pytest.mark.parametrize("name", NAMES)
def test_a_resumed_run_takes_the_same_next_steps(tiny_model_dir, tmp_path, name):
    """Stop after two steps, resume from the checkpoint in a new model and optimizer: steps 3 and 4 are the same
    as those of the run that went on. GaLore and APOLLO keep their projection across the stop (a new one would be
    computed from step 3's gradient), BAdam its block (it switches after step 3)."""
    options = {"galore_rank": 2, "apollo_rank": 2, "apollo_proj": "svd", "badam_switch_interval": 2}
    model = _model(tiny_model_dir, lora=True)
    optimizer, scheduler = _built(model, name, **options)
    for step in range(2):
        _step(model, optimizer, scheduler, step)
    path = save_checkpoint(tmp_path, model, optimizer, scheduler, LoopState(step=2), None)
    went_on = [_step(model, optimizer, scheduler, step) for step in (2, 3)]

    resumed_model = _model(tiny_model_dir, lora=True)
    resumed_optimizer, resumed_scheduler = _built(resumed_model, name, **options)
    load_checkpoint(path, resumed_model, resumed_optimizer, resumed_scheduler)
    resumed = [_step(resumed_model, resumed_optimizer, resumed_scheduler, step) for step in (2, 3)]

    assert resumed == went_on
    weights = dict(resumed_model.named_parameters())
    for weight_name, weight in model.named_parameters():
        assert torch.equal(weight, weights[weight_name]), weight_name
    assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_optimizer_state_in_a_checkpoint_is_tensors_and_json(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    for name, marker in [("galore", "projector.ortho_matrix"), ("adamw_8bit", "state1"), ("badam", None)]:
        model = _model(tiny_model_dir, lora=True)
        optimizer, scheduler = _built(model, name, galore_rank=2, badam_switch_interval=5)
        _step(model, optimizer, scheduler, 0)
        path = save_checkpoint(tmp_path / name, model, optimizer, scheduler, LoopState(step=1), None)
        saved = json.loads((path / "optimizer.json").read_text())
        if marker:
            assert any(key.endswith(marker) for key in load_file(path / "optimizer.safetensors")), name
        else:  # BAdam's position: block 0 active, step 1 of 5 taken
            assert saved["blocks"]["active"] == 0 and saved["blocks"]["step"] == 1


# -- refusals ---------------------------------------------------------------------------


def test_a_missing_package_names_the_extra_to_install_before_and_at_the_start(tiny_model_dir, monkeypatch):
    from studio.config import RunConfig
    from studio.control.validation import check_optimizer

    monkeypatch.setitem(sys.modules, "galore_torch", None)  # what Python does for a package that is not there
    with pytest.raises(StudioError, match=r"pip install 'qlora-studio\[galore\]'"):
        check_optimizer(RunConfig().with_overrides(_FULL | {"optimizer.name": "galore"}))  # before a run folder exists
    with pytest.raises(StudioError, match=r"pip install 'qlora-studio\[galore\]'"):
        _built(_model(tiny_model_dir), "galore")
    check_optimizer(RunConfig().with_overrides(_FULL | {"optimizer.name": "apollo"}))


_FULL = {"finetuning.method": "full"}


@pytest.mark.parametrize("name", ["galore", "apollo", "badam"])
def test_optimizers_of_the_model_s_own_weights_are_refused_with_an_adapter(name):
    from studio.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="finetuning.method to full or freeze"):
        RunConfig().with_overrides({"optimizer.name": name})
    RunConfig().with_overrides({"optimizer.name": name, "finetuning.method": "freeze"})


def test_only_adamw_steps_sharded_weights_and_badam_has_one_learning_rate(tiny_model_dir):
    model = _model(tiny_model_dir, lora=True)
    with pytest.raises(StudioError, match="fsdp"):
        build_optimizer(model, TrainingConfig(), OptimizerConfig(name="adamw_8bit"), LoraConfig(), sharded=True)
    with pytest.raises(StudioError, match="loraplus_lr_ratio"):
        build_optimizer(model, TrainingConfig(), OptimizerConfig(name="badam"), LoraConfig(loraplus_lr_ratio=16))


def test_layerwise_updates_and_badam_ratio_mode_are_refused_with_a_reason():
    from pydantic import ValidationError

    for options in ({"galore_layerwise": True}, {"apollo_layerwise": True}, {"badam_mode": "ratio"}):
        with pytest.raises(ValidationError, match="backward"):
            OptimizerConfig(**options)


# -- learning-rate schedules ------------------------------------------------------------

LR, WARMUP, TOTAL = 0.1, 3, 30
# the studio's options -> the keyword arguments transformers' schedule takes for them (its lr_scheduler_kwargs)
SCHEDULES = {
    "cosine": ({"lr_num_cycles": 1.0}, {"num_cycles": 1.0}),
    "linear": ({}, {}),
    "constant": ({}, {}),
    "constant_with_warmup": ({}, {}),
    "cosine_with_restarts": ({"lr_num_cycles": 3}, {"num_cycles": 3}),
    "polynomial": ({"lr_power": 2.0, "lr_min_ratio": 0.1}, {"power": 2.0, "lr_end": 0.01}),
    "inverse_sqrt": ({"lr_timescale": 5}, {"timescale": 5}),
    "cosine_with_min_lr": ({"lr_min_ratio": 0.2}, {"min_lr_rate": 0.2}),
    "cosine_warmup_with_min_lr": ({"lr_min_ratio": 0.2, "lr_num_cycles": 1.0}, {"min_lr_rate": 0.2, "num_cycles": 1.0}),
    "warmup_stable_decay": (
        {"lr_decay_steps": 8, "lr_decay_type": "1-sqrt", "lr_warmup_type": "cosine", "lr_min_ratio": 0.1},
        {"num_decay_steps": 8, "decay_type": "1-sqrt", "warmup_type": "cosine", "min_lr_ratio": 0.1},
    ),
    "reduce_lr_on_plateau": ({"lr_factor": 0.5, "lr_patience": 1}, {"mode": "min", "factor": 0.5, "patience": 1}),
    "greedy": (
        {"lr_factor": 0.5, "lr_patience": 1, "lr_min_ratio": 0.1},
        {"mode": "min", "factor": 0.5, "patience": 1, "min_lr": 0.01, "max_lr": 0.1},
    ),
}
# an evaluation metric that improves, stalls, improves: moves both metric-driven schedules down and (greedy) up
METRICS = [3.0, 2.5, 2.5, 2.5, 2.5, 2.0, 1.5, 1.0, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.2]


def _curve(scheduler, optimizer, metric_driven: bool) -> list[float]:
    curve = []
    for value in METRICS if metric_driven else range(TOTAL):
        optimizer.step()
        scheduler.step(value) if metric_driven else scheduler.step()
        curve.append(optimizer.param_groups[0]["lr"])
    return curve


def test_every_transformers_schedule_is_offered():
    from typing import get_args

    from transformers import SchedulerType

    assert set(SCHEDULES) == set(get_args(TrainingConfig.model_fields["lr_scheduler"].annotation))
    assert set(SCHEDULES) == {kind.value for kind in SchedulerType}


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_schedule_follows_transformers_curve(name):
    from transformers import get_scheduler

    ours, theirs = SCHEDULES[name]
    metric_driven = name in ("reduce_lr_on_plateau", "greedy")
    training = TrainingConfig(learning_rate=LR, warmup_steps=WARMUP, lr_scheduler=name, **ours)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    studio = _curve(build_scheduler(optimizer, training, TOTAL), optimizer, metric_driven)
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    reference = get_scheduler(name, reference_optimizer, WARMUP, TOTAL, scheduler_specific_kwargs=theirs)
    # the same up to rounding (0.1 x 0.1 is not 0.01 in floating point)
    assert studio == pytest.approx(_curve(reference, reference_optimizer, metric_driven), rel=1e-12, abs=1e-15)
    assert len(set(studio)) > 1 or name == "constant"


def _trainer(tiny_model_dir, tiny_tokenizer, tmp_path, events: list, optimizer: OptimizerConfig, **training):
    import threading

    from studio.config import QuantizationConfig
    from studio.modeling.compute import resolve_plan
    from studio.training.loop import Trainer
    from tests.support import demo_conversations

    examples = demo_conversations(tiny_tokenizer, 12)
    config = TrainingConfig(
        max_steps=4,
        batch_size=2,
        gradient_accumulation_steps=2,
        logging_steps=1,
        early_stopping_patience=None,
        precision="fp32",
        micro_batch_lanes=2,  # the step's gradients come from two lanes (autograd.grad, not backward into .grad)
        **training,
    )
    return Trainer(
        _model(tiny_model_dir, lora=True),
        train=examples[:8],
        val=examples[8:],
        config=config,
        lora=LoraConfig(),
        plan=resolve_plan(QuantizationConfig(method="none"), config, cuda=False),
        checkpoints_dir=tmp_path,
        emit=events.append,
        abort=threading.Event(),
        optimizer=optimizer,
    )


@pytest.mark.parametrize("name", NAMES)
def test_each_optimizer_trains_in_the_loop_and_checkpoints(tiny_model_dir, tiny_tokenizer, tmp_path, name):
    events: list = []
    options = OptimizerConfig(name=name, galore_rank=2, apollo_rank=2, badam_switch_interval=1)
    trainer = _trainer(tiny_model_dir, tiny_tokenizer, tmp_path, events, options, learning_rate=5e-3, save_steps=2)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.run()
    losses = [event.loss for event in events if event.type == "step"]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if n in before)
    assert [event.step for event in events if event.type == "checkpoint"] == [2]


def test_the_loop_lowers_the_learning_rate_on_a_plateau_of_evaluations(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A learning rate too small to move eval_loss: every evaluation after the first is no better, so with
    patience 0 each halves the learning rate the next steps report."""
    events: list = []
    schedule = {"lr_scheduler": "reduce_lr_on_plateau", "lr_factor": 0.5, "lr_patience": 0}
    trainer = _trainer(
        tiny_model_dir,
        tiny_tokenizer,
        tmp_path,
        events,
        OptimizerConfig(),
        learning_rate=1e-6,
        eval_steps=1,
        **schedule,
    )
    trainer.run()
    rates = [event.learning_rate for event in events if event.type == "step"]
    assert rates == pytest.approx([1e-6, 1e-6, 5e-7, 2.5e-7], rel=1e-9)


def test_a_schedule_that_follows_evaluations_needs_a_validation_split():
    from studio.config import RunConfig
    from studio.control.validation import check_optimizer

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(StudioError, match="validation"):
        build_scheduler(optimizer, TrainingConfig(lr_scheduler="reduce_lr_on_plateau"), TOTAL, evaluates=False)
    greedy = RunConfig().with_overrides({"training.lr_scheduler": "greedy"})
    check_optimizer(greedy)
    with pytest.raises(StudioError, match="data.val_size"):
        check_optimizer(greedy.with_overrides({"data.val_size": "0"}))


# -- vision-language models -------------------------------------------------------------


def _vision_language(tiny_vl_model_dir, **freeze):
    """The tiny Qwen2-VL trained in full, its parts frozen as `freeze` says (as a run attaches the method)."""
    from transformers import AutoModelForImageTextToText

    from studio.config import FinetuningConfig
    from studio.modeling.methods import attach_method

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl_model_dir, dtype=torch.float32)
    return attach_method(model.requires_grad_(False), FinetuningConfig(method="full", **freeze), LoraConfig())


def _projected(model, optimizer) -> set[str]:
    """The modules whose weights a GaLore or APOLLO group projects (a group with a rank)."""
    names = {id(p): name.removesuffix(".weight") for name, p in model.named_parameters()}
    return {names[id(p)] for group in optimizer.param_groups if "rank" in group for p in group["params"]}


@pytest.mark.parametrize("name", ["galore", "apollo"])
def test_all_targets_the_language_model_of_a_vision_language_model_not_its_vision_tower(tiny_vl_model_dir, name):
    model = _vision_language(tiny_vl_model_dir)
    optimizer, scheduler = _built(model, name, warmup=0, galore_rank=2, apollo_rank=2)
    projected = _projected(model, optimizer)
    assert projected and all(n.startswith("model.language_model.layers.") for n in projected), projected
    assert len(projected) == 2 * 7  # q, k, v, o, gate, up, down of both layers
    vision = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" in n}
    ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(0))
    before = model.model.language_model.layers[0].self_attn.q_proj.weight.detach().clone()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, before)
    assert all(torch.equal(p, vision[n]) for n, p in model.named_parameters() if "visual" in n)  # frozen


def test_all_takes_the_unfrozen_vision_tower_but_never_the_projector(tiny_vl_model_dir):
    """LLaMA-Factory's rule: the vision tower's linear layers when it is not frozen; the projector, even when it
    trains, with plain AdamW."""
    model = _vision_language(tiny_vl_model_dir, freeze_vision_tower=False, freeze_multi_modal_projector=False)
    optimizer, _ = _built(model, "galore", galore_rank=2)
    projected = _projected(model, optimizer)
    vision = {f"model.visual.blocks.{i}.{m}" for i in (0, 1) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    assert vision <= projected and not any("merger" in n for n in projected)
    plain = {id(p) for group in optimizer.param_groups if "rank" not in group for p in group["params"]}
    assert id(model.model.visual.merger.mlp[0].weight) in plain  # it trains, unprojected
    named, _ = _built(model, "galore", galore_rank=2, galore_target=["mlp"])  # a named target matches any part
    assert "model.visual.merger.mlp.0" in _projected(model, named)


def test_badam_steps_the_language_model_of_a_vision_language_model_and_refuses_its_vision_parts(tiny_vl_model_dir):
    """The decoder layers are BAdam's blocks and the frozen vision tower stays as it is; an unfrozen vision tower or
    projector is refused (LLaMA-Factory's BAdam would leave it as it is, the switch doing nothing)."""
    model = _vision_language(tiny_vl_model_dir)
    optimizer, scheduler = _built(model, "badam", warmup=0, badam_switch_interval=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _step(model, optimizer, scheduler, step=0)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {name.split(".")[3] for name in changed if name.startswith("model.language_model.layers.")} == {"0"}
    assert not any("visual" in name for name in changed)
    for unfrozen in ("freeze_vision_tower", "freeze_multi_modal_projector"):
        with pytest.raises(StudioError, match="freeze_vision_tower"):
            _built(_vision_language(tiny_vl_model_dir, **{unfrozen: False}), "badam")
