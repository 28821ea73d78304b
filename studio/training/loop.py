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
from typing import TYPE_CHECKING, Literal

import torch

from studio.config import LoraConfig, OptimizerConfig, PreferenceConfig, TrainingConfig
from studio.modeling.compute import ComputePlan
from studio.runs.events import Eval, Event, Heartbeat, Log, Phase, Step
from studio.training.batches import StepSchedule
from studio.training.checkpoint import (
    LoopState,
    load_checkpoint,
    read_objective_state,
    save_checkpoint,
    trainable_state,
)
from studio.training.distributed import Ranks
from studio.training.levers import DEFAULT_LEVERS, Levers
from studio.training.objectives import build_objective
from studio.training.optimizers import build_optimizer, build_scheduler, step_on_metric, steps_on_metric
from studio.training.ppo import PpoObjective
from studio.training.reinforce import SamplingObjective
from studio.training.strategies import add_tally, choose_strategy, lane_count
from studio.training.token_losses import TokenLosses
from studio.training.weights import adapter_off

if TYPE_CHECKING:
    from studio.training.pictures import TrainingPictures
    from studio.training.reinforce import Reinforcement
    from studio.training.watch import Watcher

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
        model: torch.nn.Module,
        *,
        train: list,
        val: list,
        config: TrainingConfig,
        lora: LoraConfig,
        plan: ComputePlan,
        checkpoints_dir: Path,
        emit: Callable[[Event], None],
        abort: threading.Event,
        levers: Levers = DEFAULT_LEVERS,
        preference: PreferenceConfig | None = None,
        reinforce: Reinforcement | None = None,
        ranks: Ranks = Ranks(),
        watcher: Watcher | None = None,
        optimizer: OptimizerConfig = OptimizerConfig(),
        pictures: TrainingPictures | None = None,
    ):
        """`train` and `val` hold the items of `config.stage`: Encoded conversations (sft), EncodedPair (dpo),
        EncodedFeedback (kto), TextRow (pt), EncodedPair (rm) or EncodedPrompt (ppo, grpo); `preference` configures
        the dpo and kto losses, `reinforce` what ppo and grpo sample and how they score it, `watcher` the prompts
        answered at each evaluation (watch.py), `optimizer` what steps the weights (optimizers.py), `pictures` how a
        vision-language model's examples become pixel inputs (pictures.py). How each step's gradients are produced
        and combined (one process, CPU lanes, several ranks, FSDP) is the strategy's, chosen here once
        (strategies.py)."""
        self.model, self.train, self.val = model, train, val
        self.watcher = watcher
        self.ranks = ranks
        self.config, self.plan = config, plan
        lanes = lane_count(ranks, plan.device, config.micro_batch_lanes, every_weight=plan.finetuning == "full")
        self.token_losses = TokenLosses(
            model,
            device=plan.device,
            packing=config.packing,
            token_budget=config.tokens_per_forward(plan.device),
            batch_size=config.batch_size,
            lanes=lanes,
            levers=levers,
            pictures=pictures,
        )
        self.objective = build_objective(config.stage, self.token_losses, preference, model, reinforce)
        self.checkpoints_dir, self.emit, self.abort = checkpoints_dir, emit, abort
        self.schedule = StepSchedule.of(len(train), config, *_repeats(self.objective))
        if isinstance(self.objective, PpoObjective):
            self.objective.bind(train, self.schedule, ranks.sum)
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
        self.scaler = (
            torch.amp.GradScaler("cuda") if plan.device == "cuda" and plan.weight_dtype == torch.float16 else None
        )
        self.strategy = choose_strategy(
            ranks=ranks, objective=self.objective, lanes=lanes, plan=plan, abort=abort, scaler=self.scaler
        )
        if isinstance(self.objective, SamplingObjective):  # it samples on this thread, not in the strategy's lanes
            self.objective.sampler.compute = self.strategy.autocast
        if not plan.pure_bf16:
            _fp32_trainable(model)
        self.trainable = self.strategy.prepare(model)
        self.optimizer = build_optimizer(model, config, optimizer, lora, sharded=ranks.sharded)
        self.scheduler = build_scheduler(self.optimizer, config, self.schedule.total_steps, evaluates=bool(val))
        self.state = LoopState()
        self._last_beat = time.time()
        self.best_weights: dict | None = None

    def resume(self, checkpoint: str | Path) -> None:
        self.state, self.best_weights = load_checkpoint(
            checkpoint, self.model, self.optimizer, self.scheduler, sharded=self.ranks.sharded
        )
        if isinstance(self.objective, PpoObjective):
            self.objective.load_state(read_objective_state(checkpoint))

    def same_start(self) -> None:
        """With several ranks, all start from rank 0's trainable weights (after any resume)."""
        self.strategy.same_start()

    def describe(self) -> str:
        return self.objective.describe() + self.strategy.describe()

    def compute_reference(self, base: bool) -> None:
        """DPO/KTO (not dpo's reference-free orpo and simpo losses): the reference model's log-probabilities of
        every answer the run will use, computed once, before the first step and before a resumed run loads its
        checkpoint's weights. `base`: with the adapter turned off; else with the adapter as training starts
        (lora.init_adapter). No second model is kept."""
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
        with adapter_off(self.model) if base else contextlib.nullcontext():
            self.strategy.no_grad_map(self.objective.store_reference, self.objective.lane_plans(items))
        self.model.train()
        self.emit(Log(level="info", message=f"Reference computed from {which} in {time.time() - started:.1f} s."))

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            self.strategy.close()

    def _run(self) -> Outcome:
        total = self.schedule.total_steps
        started, first_step = time.time(), self.state.step
        window = _Window()
        self.model.train()
        for step in range(self.state.step, total):
            result = None if self.strategy.any(self.abort.is_set()) else self._optimizer_step(step)
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
            self.strategy.load_weights(self.model, self.best_weights)

    def adapter_weights(self) -> dict | None:
        """For save_pretrained's state_dict: a sharded model's whole weights (collective: every rank calls it);
        None for a whole model, whose save reads them itself."""
        return self.strategy.whole_weights(self.model)

    # -- one optimizer step ------------------------------------------------------------

    def _optimizer_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor | None] | None:
        """The step's examples, their gradients (produced and combined by the strategy), clipping, the update."""
        examples = [self.train[i] for indices in self.schedule.micro_batches(step) for i in indices]
        # ppo and grpo sample answers here, each process to its share of the prompts
        self.objective.prepare_step(examples, self.strategy.no_grad_map, step, self.strategy.share)
        weight = self.strategy.step_weight(examples)  # what the step's summed losses are divided by
        produced = self.strategy.gradients(examples, lambda group: self.objective.loss(group, weight))
        if produced is None:  # abort requested mid-step: the partial step is discarded
            self.optimizer.zero_grad(set_to_none=True)
            return None
        loss_sum, tally = produced
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self.strategy.clip(self.config.max_grad_norm) if self.config.max_grad_norm > 0 else None
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if not steps_on_metric(self.config):  # reduce_lr_on_plateau and greedy move at evaluations
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, self.strategy.tokens(examples), tally

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
                learning_rate=float(self.scheduler.get_last_lr()[0]),  # torch's type allows a tensor learning rate
                grad_norm=grad_norm,
                tokens_per_second=tokens_per_second,
                elapsed_s=elapsed,
                eta_s=eta,
                rss_mib=_rss_mib(),
            )
        )
        if tally is not None:
            for event in self.objective.report(self.state.step, "train", tally):
                self.emit(event)

    def _evaluate(self) -> bool:
        """Evaluate on the validation split; True when early stopping says stop."""
        self.model.eval()
        self.objective.prepare_eval(self.val, self.strategy.no_grad_map, self.strategy.share)
        total = self.strategy.evaluate(self.val)
        self.model.train()
        metrics = self.objective.eval_metrics(total, self.val)
        stop = self._track_best(metrics)
        if steps_on_metric(self.config):
            step_on_metric(self.scheduler, metrics[self.config.tracked_metric])
        patience = self.config.early_stopping_patience
        if "eval_loss" in metrics:  # ppo and grpo have no loss to evaluate: their answers' reward instead
            assert self.state.best_eval_loss is not None  # set by this evaluation, if not by a better one before
            self.emit(
                Eval(
                    step=self.state.step,
                    epoch=round(self.schedule.epoch_at(self.state.step), 4),
                    eval_loss=metrics["eval_loss"],
                    best_eval_loss=self.state.best_eval_loss,
                    patience_left=None if patience is None else patience - self.state.evals_without_improvement,
                )
            )
        if self.objective.tallies:
            for event in self.objective.report(self.state.step, "eval", total):
                self.emit(event)
        if self.watcher is not None and self.ranks.main and not self.ranks.sharded:
            self.emit(self.watcher.answer(self.model, self.state.step, self.plan.device, self.strategy.autocast))
        return stop

    def _track_best(self, metrics: dict[str, float]) -> bool:
        """Whether this evaluation is the best so far by training.best_metric (eval_loss: lower is better;
        reward_accuracy, reward_margin: higher is better); True when early stopping says stop."""
        state, name = self.state, self.config.tracked_metric
        state.last_eval_step = state.step
        score, lower_is_better = metrics[name], name == "eval_loss"
        best = state.best_score if state.best_score is not None else (state.best_eval_loss if lower_is_better else None)
        better = best is None or (score < best - 1e-6 if lower_is_better else score > best + 1e-6)
        if better:
            state.best_score, state.best_eval_loss, state.best_step = score, metrics.get("eval_loss"), state.step
            state.evals_without_improvement = 0
            self.best_weights = self._best_weights() if self.config.load_best_at_end else None
            return False
        state.evals_without_improvement += 1
        patience = self.config.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    def _best_weights(self) -> dict:
        return trainable_state(self.model, self.adapter_weights())

    def _save(self, reason: Literal["periodic", "abort"]) -> Path | None:
        """A checkpoint, written by rank 0 alone (every rank holds the same weights; sharded ones are gathered
        by all first)."""
        from studio.runs.events import Checkpoint

        gathered = self.strategy.gathered(self.model, self.optimizer)
        if not self.ranks.main:
            return None
        path = save_checkpoint(
            self.checkpoints_dir,
            self.model,
            self.optimizer,
            self.scheduler,
            self.state,
            self.best_weights,
            gathered,
            objective_state=self.objective.state() if isinstance(self.objective, PpoObjective) else None,
        )
        self.emit(Checkpoint(step=self.state.step, path=str(path), reason=reason))
        return path


class _Window:
    """Losses and token counts since the last logged step; synced to the host only on flush."""

    losses: list[torch.Tensor]
    norms: list[torch.Tensor]
    tally: torch.Tensor | None

    def __init__(self) -> None:
        self.losses, self.norms, self.tokens, self.since, self.tally = [], [], 0, time.time(), None
        self.last_loss: float | None = None

    def add(
        self, loss: torch.Tensor, grad_norm: torch.Tensor | None, tokens: int, tally: torch.Tensor | None = None
    ) -> None:
        self.losses.append(loss)
        if grad_norm is not None:
            self.norms.append(grad_norm)
        self.tokens += tokens
        self.tally = add_tally(self.tally, tally)

    def flush(self) -> tuple[float, float | None, float, torch.Tensor | None]:
        loss = torch.stack(self.losses).float().mean().item()
        norm = torch.stack(self.norms).float().mean().item() if self.norms else None
        rate = self.tokens / max(1e-9, time.time() - self.since)
        tally = self.tally
        self.losses, self.norms, self.tokens, self.since, self.tally = [], [], 0, time.time(), None
        self.last_loss = loss
        return loss, (None if norm is None or math.isnan(norm) else norm), round(rate, 1), tally


def _repeats(objective: object) -> tuple[int, int]:
    """PPO trains each buffer of answers several times: (repeats, steps per buffer); (1, 1) for other stages."""
    return (objective.repeat, objective.buffer) if isinstance(objective, PpoObjective) else (1, 1)


def _rss_mib() -> float:
    """Current resident memory of this process; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return round(pages * resource.getpagesize() / 2**20, 1)
    except OSError:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _fp32_trainable(model: torch.nn.Module) -> None:
    """fp32 master weights for the adapter (before any sharding, which keeps each parameter's dtype)."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
