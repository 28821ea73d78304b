"""The training loop: optimizer steps, logging, evaluation, early stopping, checkpoints, abort.

Reads top to bottom: `Trainer.run` is the whole story; the private helpers are its steps.
Host syncs (`.item()`) happen only when a step is logged or evaluated.
"""

from __future__ import annotations

import contextlib
import math
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from studio.config import LoraConfig, PreferenceConfig, TrainingConfig
from studio.modeling.compute import ComputePlan
from studio.runs.events import Eval, Heartbeat, Log, Phase, Preference, Step
from studio.training.batches import StepSchedule
from studio.training.checkpoint import Gathered, LoopState, load_checkpoint, save_checkpoint, trainable_state
from studio.training.distributed import Ranks
from studio.training.lanes import Lanes, add_gradients, lanes_for, sum_gradients
from studio.training.levers import DEFAULT_LEVERS, Levers
from studio.training.objectives import build_objective
from studio.training.preference import tally_metrics
from studio.training.sharding import (
    clip_gradients,
    gather_optimizer,
    is_sharded,
    load_trainable,
    shard_model,
    whole_trainable,
)
from studio.training.token_losses import TokenLosses

HEARTBEAT_S = 1.0  # at most one heartbeat event a second, however fast the steps


@dataclass(kw_only=True)
class Outcome:
    state: LoopState
    last_loss: float | None
    aborted: bool = False
    stopped_early: bool = False
    checkpoint: Path | None = None  # the abort checkpoint


class Trainer:
    def __init__(
        self,
        model,
        *,
        train: list,
        val: list,
        config: TrainingConfig,
        lora: LoraConfig,
        plan: ComputePlan,
        checkpoints_dir: Path,
        emit: Callable,
        abort: threading.Event,
        levers: Levers = DEFAULT_LEVERS,
        preference: PreferenceConfig | None = None,
        ranks: Ranks = Ranks(),
    ):
        """`train` and `val` hold the items of `config.stage`: Encoded conversations (sft), EncodedPair (dpo),
        EncodedFeedback (kto) or TextRow (pt); `preference` configures the dpo and kto losses. With several
        `ranks` (torchrun), each trains its share of every step and the gradients are summed over them; with
        `ranks.sharded` (FSDP) the decoder layers are sharded over the ranks here, before the optimizer exists."""
        self.model, self.train, self.val = model, train, val
        self.ranks = ranks
        self.config, self.plan = config, plan
        # FSDP's gathers are collectives in a fixed order: one forward pass at a time, no lanes
        self.lanes = Lanes(1 if ranks.sharded else lanes_for(plan.device, config.micro_batch_lanes))
        self.token_losses = TokenLosses(
            model,
            device=plan.device,
            packing=config.packing,
            token_budget=config.tokens_per_forward(plan.device),
            batch_size=config.batch_size,
            lanes=self.lanes.count,
            levers=levers,
        )
        self.objective = build_objective(config.stage, self.token_losses, preference)
        self.checkpoints_dir, self.emit, self.abort = checkpoints_dir, emit, abort
        self.schedule = StepSchedule.of(len(train), config)
        _fp32_trainable(model)
        self.sharded_layers = self._shard() if ranks.sharded else 0
        self.optimizer = _build_optimizer(model, config, lora)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.scheduler = _build_scheduler(self.optimizer, config, self.schedule.total_steps)
        self.state = LoopState()
        self._last_beat = time.time()
        self.best_weights: dict | None = None
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
        self.scaler = (
            torch.amp.GradScaler("cuda") if plan.device == "cuda" and plan.weight_dtype == torch.float16 else None
        )

    def _shard(self) -> int:
        """FSDP: every rank starts from rank 0's adapter (DDP's rule), then the layers are sharded."""
        self.ranks.same_start([p for p in self.model.parameters() if p.requires_grad])
        return shard_model(self.model)

    def resume(self, checkpoint: Path) -> None:
        self.state, self.best_weights = load_checkpoint(
            checkpoint, self.model, self.optimizer, self.scheduler, sharded=self.ranks.sharded
        )

    def same_start(self) -> None:
        """With several ranks, all start from rank 0's trainable weights (after any resume; a sharded model
        started the same before it was sharded, and every rank read the same checkpoint)."""
        if not self.ranks.sharded:
            self.ranks.same_start(self.trainable)

    def describe(self) -> str:
        lanes = (
            f" CPU lanes: {self.lanes.count} shares of equal work trained at the same time."
            if self.lanes.count > 1
            else ""
        )
        ranks = (
            f" Data parallel: {self.ranks.world} processes, each training its share of every step by token cost; "
            "LoRA gradients summed over them before each optimizer step."
            if self.ranks.several
            else ""
        )
        if self.ranks.sharded:
            world = self.ranks.world
            ranks += (
                f" FSDP: {self.sharded_layers} decoder layers sharded over the {world} processes, each holding "
                f"1/{world} of their weights and stepping 1/{world} of the adapter; embeddings and output layer whole "
                "on each."
            )
        return self.objective.describe() + lanes + ranks

    def compute_reference(self, base: bool) -> None:
        """DPO/KTO: the reference model's log-probabilities of every answer the run will use, computed once,
        before the first step and before a resumed run loads its checkpoint's weights. `base`: with the adapter
        turned off; else with the adapter as training starts (lora.init_adapter). No second model is kept."""
        if not self.objective.needs_reference:
            return
        scheduled = {
            id(self.train[i]): self.train[i]
            for step in range(self.schedule.total_steps)
            for indices in self.schedule.micro_batches(step)
            for i in indices
        }
        items = list(scheduled.values()) + self.val
        which = "the base model (adapter off)" if base else "the initial adapter"
        self.emit(Phase(name="reference", message=f"Reference log-probabilities of {len(items)} examples from {which}"))
        started = time.time()
        self.model.eval()
        with self.model.disable_adapter() if base else contextlib.nullcontext():
            self._no_grad_map(self.objective.store_reference, self.objective.lane_plans(items))
        self.model.train()
        self.emit(Log(level="info", message=f"Reference computed from {which} in {time.time() - started:.1f} s."))

    def _no_grad_map(self, work: Callable, plans: list) -> list:
        """`work` on every group of the lane plans, without gradients; results group by group, lane by lane
        (a filler's result is dropped: see _even)."""

        def lane(batches):
            with torch.no_grad(), self._autocast():  # grad mode and autocast are per thread: each lane sets its own
                return [(work(_unwrap(group)), not isinstance(group, _Filler)) for group in batches]

        return [result for results in self.lanes.map(lane, plans) for result, kept in results if kept]

    def _even(self, plans: list, items: list) -> list:
        """FSDP: every rank makes as many forward passes as the busiest one (each pass gathers the sharded
        layers with the others); a rank with fewer repeats a group of `items`, the step's or split's whole
        list, whose result is dropped. Other runs: `plans` unchanged."""
        if not self.ranks.sharded:
            return plans
        groups = [group for lane in plans for group in lane]
        most = self.ranks.most(len(groups), self.plan.device)
        if most == len(groups):
            return plans
        filler = _Filler(self.objective.lane_plans(items[:1])[0][0])
        return [groups + [filler] * (most - len(groups))]

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            self.lanes.close()

    def _run(self) -> Outcome:
        total = self.schedule.total_steps
        started, first_step = time.time(), self.state.step
        window = _Window()
        self.model.train()
        for step in range(self.state.step, total):
            result = None if self.ranks.any(self.abort.is_set(), self.plan.device) else self._optimizer_step(step)
            if result is None:  # abort requested mid-step: the partial step is discarded
                path = self._save("abort")
                return Outcome(state=self.state, last_loss=window.last_loss, aborted=True, checkpoint=path)
            window.add(*result)
            self.state.step = step + 1
            if self._should_log(step + 1, total):
                self._log(window, started, first_step)
            elif time.time() - self._last_beat >= HEARTBEAT_S:
                self._beat(started, first_step)
            if self._should_eval(step + 1, total) and self._evaluate():
                return Outcome(state=self.state, last_loss=window.last_loss, stopped_early=True)
            if (step + 1) % self.config.save_steps == 0 and step + 1 < total:
                self._save("periodic")
        return Outcome(state=self.state, last_loss=window.last_loss)

    def finalize(self) -> None:
        """Put the best evaluated weights back when the config asks for them."""
        if self.config.load_best_at_end and self.best_weights is not None and self.state.best_step != self.state.step:
            from peft import set_peft_model_state_dict

            if self.ranks.sharded:
                load_trainable(self.model, self.best_weights)
            else:
                set_peft_model_state_dict(self.model, self.best_weights)

    def adapter_weights(self) -> dict | None:
        """For save_pretrained's state_dict: a sharded model's whole weights (collective: every rank calls it);
        None for a whole model, whose save reads them itself."""
        if not self.ranks.sharded:
            return None
        return whole_trainable(self.model)

    # -- one optimizer step ------------------------------------------------------------

    def _optimizer_step(self, step: int):
        examples = [self.train[i] for indices in self.schedule.micro_batches(step) for i in indices]
        weight = self.objective.step_weight(examples)  # what the step's summed losses are divided by
        self.objective.prepare_step(examples, self._no_grad_map)
        loss_sum, tally = torch.zeros((), device=self.plan.device), None
        plans = self._even(self.objective.lane_plans(self.ranks.share(examples, self._work)), examples)
        for result in self.lanes.map(lambda batches: self._lane_step(batches, weight), plans):
            if result is None:  # abort requested mid-step: the partial step is discarded
                self.optimizer.zero_grad(set_to_none=True)
                return None
            loss, gradients, lane_tally = result
            if gradients is not None:  # added in lane order: repeatable however lanes interleave
                add_gradients(self.trainable, gradients)
            loss_sum += loss
            tally = _add(tally, lane_tally)
        if self.ranks.several:  # every rank ends the step with the whole step's gradients, loss and tally
            # (FSDP has summed the sharded layers' gradients into each rank's slice during backward)
            self.ranks.sum_gradients([p for p in self.trainable if not is_sharded(p)])
            loss_sum = self.ranks.sum(loss_sum)
            if self.objective.preference:  # a rank without a share adds an empty tally
                tally = self.ranks.sum(tally if tally is not None else self.objective.empty_tally(self.plan.device))
        grad_norm = None
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm > 0 and self.ranks.sharded:
            grad_norm = clip_gradients(self.trainable, self.config.max_grad_norm)
        elif self.config.max_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, self.objective.tokens(examples), tally

    def _work(self, item) -> int:
        """What an example costs to train, for dealing a step's examples to the ranks."""
        return self.objective.tokens([item])

    def _lane_step(self, batches: list[list], weight: float):
        """One lane's micro-batches in order: their summed loss, gradients and metric tally, or None on abort."""
        loss_sum, gradient_sum, tally = None, None, None
        for group in batches:
            result = self._micro_step(group, weight)
            if result is None:
                return None
            loss, gradients, group_tally = result
            loss_sum = loss if loss_sum is None else loss_sum + loss
            gradient_sum = sum_gradients(gradient_sum, gradients)
            tally = _add(tally, group_tally)
        return loss_sum, gradient_sum, tally

    def _micro_step(self, group: list, weight: float):
        """Forward and backward of one micro-batch. In a lane its gradients come back rather than
        landing in `.grad`, so the trainer can add them in order."""
        if self.abort.is_set() and not self.ranks.several:  # ranks stop together, at a step's start
            return None
        loss, tally = self._forward(_unwrap(group), weight)
        if isinstance(group, _Filler):  # made for FSDP's gathers (its backward still reaches every layer): adds nothing
            loss, tally = loss * 0, None
        scaled = self.scaler.scale(loss) if self.scaler else loss
        if self.lanes.count == 1:
            scaled.backward()
            return loss.detach(), None, tally
        return loss.detach(), torch.autograd.grad(scaled, self.trainable, allow_unused=True), tally

    def _forward(self, group: list, weight: float):
        """The micro-batch's loss (its share of the step's mean) and its metric tally (preference stages)."""
        with self._autocast():
            return self.objective.loss(group, weight)

    def _autocast(self):
        if self.plan.autocast:
            return torch.autocast(self.plan.device, dtype=self.plan.weight_dtype)
        return contextlib.nullcontext()

    # -- logging, evaluation, checkpoints ------------------------------------------------

    def _should_log(self, step: int, total: int) -> bool:
        return step == 1 or step % self.config.logging_steps == 0 or step == total

    def _should_eval(self, step: int, total: int) -> bool:
        return bool(self.val) and (step % self.config.eval_steps == 0 or step == total)

    def _beat(self, started: float, first_step: int) -> None:
        """Steps between logged ones still move the page's progress (no loss: that waits for logging_steps)."""
        elapsed, eta = self._timing(started, first_step)
        self.emit(Heartbeat(step=self.state.step, total_steps=self.schedule.total_steps, elapsed_s=elapsed, eta_s=eta))
        self._last_beat = time.time()

    def _timing(self, started: float, first_step: int) -> tuple[float, float | None]:
        elapsed = time.time() - started
        done = self.state.step - first_step
        remaining = self.schedule.total_steps - self.state.step
        return round(elapsed, 2), (round(elapsed / done * remaining, 1) if done else None)

    def _log(self, window: _Window, started: float, first_step: int) -> None:
        elapsed, eta = self._timing(started, first_step)
        self._last_beat = time.time()
        loss, grad_norm, tokens_per_second, tally = window.flush()
        self.emit(
            Step(
                step=self.state.step,
                total_steps=self.schedule.total_steps,
                epoch=round(self.schedule.epoch_at(self.state.step), 4),
                loss=loss,
                learning_rate=self.scheduler.get_last_lr()[0],
                grad_norm=grad_norm,
                tokens_per_second=tokens_per_second,
                elapsed_s=elapsed,
                eta_s=eta,
                rss_mib=_rss_mib(),
            )
        )
        if tally is not None:
            self._emit_preference("train", tally_metrics(tally, with_kl=self.config.stage == "kto"))

    def _emit_preference(self, split: str, metrics: dict) -> None:
        names = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "kl")
        self.emit(Preference(step=self.state.step, split=split, **{n: metrics[n] for n in names if n in metrics}))

    def _evaluate(self) -> bool:
        """Evaluate on the validation split; True when early stopping says stop."""
        self.model.eval()
        self.objective.prepare_step(self.val, self._no_grad_map)
        mine = self._even(self.objective.lane_plans(self.ranks.share(self.val, self._work)), self.val)
        total = sum(self._no_grad_map(self.objective.eval_tally, mine), self.objective.empty_tally(self.plan.device))
        total = self.ranks.sum(total)
        self.model.train()
        metrics = self.objective.eval_metrics(total, self.val)
        stop = self._track_best(metrics)
        patience = self.config.early_stopping_patience
        self.emit(
            Eval(
                step=self.state.step,
                epoch=round(self.schedule.epoch_at(self.state.step), 4),
                eval_loss=metrics["eval_loss"],
                best_eval_loss=self.state.best_eval_loss,
                patience_left=None if patience is None else patience - self.state.evals_without_improvement,
            )
        )
        if self.objective.preference:
            self._emit_preference("eval", metrics)
        return stop

    def _track_best(self, metrics: dict[str, float]) -> bool:
        """Whether this evaluation is the best so far by training.best_metric (eval_loss: lower is better;
        reward_accuracy, reward_margin: higher is better); True when early stopping says stop."""
        state, name = self.state, self.config.best_metric
        state.last_eval_step = state.step
        score, lower_is_better = metrics[name], name == "eval_loss"
        best = state.best_score if state.best_score is not None else (state.best_eval_loss if lower_is_better else None)
        better = best is None or (score < best - 1e-6 if lower_is_better else score > best + 1e-6)
        if better:
            state.best_score, state.best_eval_loss, state.best_step = score, metrics["eval_loss"], state.step
            state.evals_without_improvement = 0
            self.best_weights = self._best_weights() if self.config.load_best_at_end else None
            return False
        state.evals_without_improvement += 1
        patience = self.config.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    def _best_weights(self) -> dict:
        return trainable_state(self.model, self.adapter_weights())

    def _save(self, reason: str) -> Path | None:
        """A checkpoint, written by rank 0 alone (every rank holds the same weights; sharded ones are gathered
        by all first)."""
        from studio.runs.events import Checkpoint

        gathered = None
        if self.ranks.sharded:
            gathered = Gathered(self.adapter_weights(), gather_optimizer(self.optimizer))
        if not self.ranks.main:
            return None
        path = save_checkpoint(
            self.checkpoints_dir, self.model, self.optimizer, self.scheduler, self.state, self.best_weights, gathered
        )
        self.emit(Checkpoint(step=self.state.step, path=str(path), reason=reason))
        return path


class _Window:
    """Losses and token counts since the last logged step; synced to the host only on flush."""

    def __init__(self):
        self.losses, self.norms, self.tokens, self.since, self.tally = [], [], 0, time.time(), None
        self.last_loss: float | None = None

    def add(self, loss: torch.Tensor, grad_norm, tokens: int, tally: torch.Tensor | None = None) -> None:
        self.losses.append(loss)
        if grad_norm is not None:
            self.norms.append(grad_norm)
        self.tokens += tokens
        self.tally = _add(self.tally, tally)

    def flush(self) -> tuple[float, float | None, float, torch.Tensor | None]:
        loss = torch.stack(self.losses).float().mean().item()
        norm = torch.stack(self.norms).float().mean().item() if self.norms else None
        rate = self.tokens / max(1e-9, time.time() - self.since)
        tally = self.tally
        self.losses, self.norms, self.tokens, self.since, self.tally = [], [], 0, time.time(), None
        self.last_loss = loss
        return loss, (None if norm is None or math.isnan(norm) else norm), round(rate, 1), tally


@dataclass(frozen=True)
class _Filler:
    """A group repeated by a rank with fewer forward passes than another (FSDP, see Trainer._even)."""

    group: list


def _unwrap(group):
    return group.group if isinstance(group, _Filler) else group


def _add(total: torch.Tensor | None, more: torch.Tensor | None) -> torch.Tensor | None:
    """Metric tallies add up; None (no tally: SFT and PT) counts as nothing."""
    if total is None or more is None:
        return more if total is None else total
    return total + more


def _rss_mib() -> float:
    """Current resident memory of this process; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return round(pages * resource.getpagesize() / 2**20, 1)
    except OSError:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _fp32_trainable(model) -> None:
    """fp32 master weights for the adapter (before any sharding, which keeps each parameter's dtype)."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()


def _build_optimizer(model, config: TrainingConfig, lora: LoraConfig):
    normal, b_matrices = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (b_matrices if lora.loraplus_lr_ratio and "lora_B" in name else normal).append(parameter)
    groups = [{"params": normal, "lr": config.learning_rate}]
    if b_matrices:  # LoRA+: B learns `ratio` times faster than A
        groups.append({"params": b_matrices, "lr": config.learning_rate * lora.loraplus_lr_ratio})
    device = next(iter(normal or b_matrices)).device.type
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay, fused=device == "cuda")


def _build_scheduler(optimizer, config: TrainingConfig, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total_steps
    )
