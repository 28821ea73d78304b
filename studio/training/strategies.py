"""How one optimizer step's gradients are produced and combined: chosen once per run by `choose_strategy`.

    OneProcess     one process; a step's micro-batches one after another (backward adds into `.grad`), or on
                   a CPU in lanes side by side, each lane returning its gradient sum, added in lane order
                   (lanes.py: repeatable however the threads interleave)
    DataParallel   several processes (torchrun), each with the whole model: the step's examples are dealt to
                   the ranks by token cost, each trains its share as OneProcess does, then gradients, loss and
                   metric tally are summed over the ranks (distributed.py)
    FullySharded   DataParallel with the decoder layers sharded over the ranks (FSDP2, sharding.py): one pass at
                   a time, every rank as many passes as the busiest (each pass gathers layers with the others)

The trainer asks a strategy for a step's gradients (`gradients`), for a function of every group of items without
gradients (`no_grad_map`: reference log-probabilities, a step's KL estimate), for an evaluation's summed tally
(`evaluate`), for clipping, and for the adapter's whole weights; what a step minimises is the objective's
(objectives.py), so a new stage adds an objective and touches nothing here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from studio.training.distributed import Ranks
from studio.training.lanes import Lanes, add_gradients, lanes_for, sum_gradients

if TYPE_CHECKING:
    from studio.modeling.compute import ComputePlan
    from studio.training.checkpoint import Gathered
    from studio.training.objectives import Objective

Tensor = torch.Tensor
Gradients = tuple[Tensor | None, ...]
# a group's loss (its share of the step's mean) and its metric tally (None for SFT and PT)
Forward = Callable[[list], tuple[Tensor, Tensor | None]]
# (loss, gradients landed outside `.grad` or None, tally) of one pass; None when an abort stopped it
Pass = tuple[Tensor, Gradients | None, Tensor | None]


def lane_count(ranks: Ranks, device: str, requested: int | None, every_weight: bool = False) -> int:
    """CPU lanes per process (FSDP's gathers are collectives in a fixed order: one forward pass at a time);
    `every_weight`: full fine-tuning (lanes_for)."""
    return 1 if ranks.sharded else lanes_for(device, requested, every_weight=every_weight)


def choose_strategy(
    *,
    ranks: Ranks,
    objective: Objective,
    lanes: int,
    plan: ComputePlan,
    abort: threading.Event,
    scaler: torch.amp.GradScaler | None = None,
) -> OneProcess:
    kind = FullySharded if ranks.sharded else DataParallel if ranks.several else OneProcess
    return kind(ranks=ranks, objective=objective, lanes=Lanes(lanes), plan=plan, abort=abort, scaler=scaler)


class OneProcess:
    def __init__(
        self,
        *,
        ranks: Ranks,
        objective: Objective,
        lanes: Lanes,
        plan: ComputePlan,
        abort: threading.Event,
        scaler: torch.amp.GradScaler | None,
    ):
        self.ranks, self.objective, self.lanes, self.plan = ranks, objective, lanes, plan
        self.abort, self.scaler = abort, scaler
        self.trainable: list[torch.nn.Parameter] = []

    # -- set once -------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Before the optimizer exists: the parameters it will step (for FSDP, each rank's slices)."""
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        return self.trainable

    def same_start(self) -> None:
        """All processes start from the same weights (after any resume)."""

    def describe(self) -> str:
        if self.lanes.count == 1:
            return ""
        return f" CPU lanes: {self.lanes.count} shares of equal work trained at the same time."

    def close(self) -> None:
        self.lanes.close()

    # -- every step ------------------------------------------------------------------------

    def any(self, flag: bool) -> bool:
        """Whether any process raised `flag` (so all stop at the same step)."""
        return flag

    def gradients(self, examples: list, forward: Forward) -> tuple[Tensor, Tensor | None] | None:
        """The step's gradients in `.grad` of the trainable parameters; the step's summed loss and tally, or None
        when an abort stopped it (the partial gradients are the caller's to discard)."""
        loss_sum, tally = torch.zeros((), device=self.plan.device), None
        for result in self.lanes.map(lambda batches: self._lane(batches, forward), self._plans(examples)):
            if result is None:
                return None
            loss, gradients, lane_tally = result
            if gradients is not None:  # added in lane order: repeatable however lanes interleave
                add_gradients(self.trainable, gradients)
            loss_sum += loss
            tally = add_tally(tally, lane_tally)
        return self._combine(loss_sum, tally)

    def share(self, items: list) -> list:
        """This process's share of `items` (what it trains of a step, answers of a step's prompts)."""
        return items

    def step_weight(self, examples: list) -> int:
        """What the step's summed losses are divided by (the objective's; see DataParallel)."""
        return self.objective.step_weight(examples)

    def tokens(self, examples: list) -> int:
        """Tokens the step trained on, every process's together."""
        return self.objective.tokens(examples)

    def no_grad_map(self, work: Callable[[list], Any], plans: list) -> list:
        """`work` on every group of the lane plans, without gradients; results group by group, lane by lane."""

        def lane(batches: list) -> list:
            with torch.no_grad(), self.autocast():  # grad mode and autocast are per thread: each lane sets its own
                return [work(group) for group in batches]

        return [result for results in self.lanes.map(lane, plans) for result in results]

    def evaluate(self, items: list) -> Tensor:
        """The objective's evaluation tally over `items`, summed over every process."""
        total = sum(self.no_grad_map(self.objective.eval_tally, self._plans(items)), self.empty_tally())
        return self._sum(total)

    def clip(self, max_norm: float) -> Tensor:
        return torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.plan.autocast:
            return torch.autocast(self.plan.device, dtype=self.plan.weight_dtype)
        return contextlib.nullcontext()

    # -- whole weights ---------------------------------------------------------------------

    def whole_weights(self, model: torch.nn.Module) -> dict[str, Tensor] | None:
        """The adapter's weights whole (collective where they are sharded); None where `model` holds them whole."""
        return None

    def load_weights(self, model: torch.nn.Module, weights: dict[str, Tensor]) -> None:
        from studio.training.value_head import load_head_state, split_head
        from studio.training.weights import load_trained_state

        adapter, head = split_head(weights)
        load_trained_state(model, adapter)
        load_head_state(model, head)

    def gathered(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Gathered | None:
        """Sharded weights and optimizer state whole, for a checkpoint (collective); None where nothing is sharded."""
        return None

    # -- the parts subclasses change ----------------------------------------------------------

    def _plans(self, items: list) -> list:
        """This process's lane plans for `items`."""
        return self.objective.lane_plans(items)

    def _combine(self, loss: Tensor, tally: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return loss, tally

    def _sum(self, values: Tensor) -> Tensor:
        return values

    def _stops_mid_step(self) -> bool:
        return self.abort.is_set()

    def _lane(self, batches: list, forward: Forward) -> tuple[Tensor, Gradients | None, Tensor | None] | None:
        """One lane's micro-batches in order: their summed loss, gradients and tally, or None on abort."""
        loss_sum, gradient_sum, tally = None, None, None
        for group in batches:
            result = self._pass(group, forward)
            if result is None:
                return None
            loss, gradients, group_tally = result
            loss_sum = loss if loss_sum is None else loss_sum + loss
            gradient_sum = sum_gradients(gradient_sum, gradients)
            tally = add_tally(tally, group_tally)
        assert loss_sum is not None  # a lane plan has at least one group
        return loss_sum, gradient_sum, tally

    def _pass(self, group: list, forward: Forward) -> Pass | None:
        """Forward and backward of one micro-batch. In a lane its gradients come back rather than landing in
        `.grad`, so they can be added in order."""
        if self._stops_mid_step():
            return None
        with self.autocast():
            loss, tally = forward(group)
        scaled = self.scaler.scale(loss) if self.scaler else loss
        if self.lanes.count == 1:
            scaled.backward()
            return loss.detach(), None, tally
        return loss.detach(), torch.autograd.grad(scaled, self.trainable, allow_unused=True), tally

    def empty_tally(self) -> Tensor:
        return self.objective.empty_tally(self.plan.device)


class DataParallel(OneProcess):
    def same_start(self) -> None:
        self.ranks.same_start(self.trainable)

    def describe(self) -> str:
        return super().describe() + (
            f" Data parallel: {self.ranks.world} processes, each training its share of every step by token cost; "
            "LoRA gradients summed over them before each optimizer step."
        )

    def any(self, flag: bool) -> bool:
        return self.ranks.any(flag, self.plan.device)

    def share(self, items: list) -> list:
        return self.ranks.share(items, self.objective.cost)

    def step_weight(self, examples: list) -> int:
        """Stages that sample answers know only their own answers' weight: summed over the processes."""
        if not self.objective.samples:
            return self.objective.step_weight(examples)
        local = torch.tensor(float(self.objective.step_weight(self.share(examples), floor=0)), device=self.plan.device)
        return max(1, int(self.ranks.sum(local).item()))

    def tokens(self, examples: list) -> int:
        if not self.objective.samples:
            return self.objective.tokens(examples)
        local = torch.tensor(float(self.objective.tokens(self.share(examples))), device=self.plan.device)
        return int(self.ranks.sum(local).item())

    def _plans(self, items: list) -> list:
        return self.objective.lane_plans(self.share(items))

    def _combine(self, loss: Tensor, tally: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Every rank ends the step with the whole step's gradients, loss and tally."""
        self._sum_gradients()
        loss = self.ranks.sum(loss)
        if self.objective.tallies:  # a rank without a share adds an empty tally
            tally = self.ranks.sum(tally if tally is not None else self.empty_tally())
        return loss, tally

    def _sum_gradients(self) -> None:
        self.ranks.sum_gradients(self.trainable)

    def _sum(self, values: Tensor) -> Tensor:
        return self.ranks.sum(values)

    def _stops_mid_step(self) -> bool:
        return False  # ranks stop together, at a step's start (`any`)


class FullySharded(DataParallel):
    def prepare(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Every rank starts from rank 0's adapter (DDP's rule), then the layers are sharded."""
        from studio.modeling.vision_parts import parts_of
        from studio.training.sharding import shard_model

        self.ranks.same_start([p for p in model.parameters() if p.requires_grad])
        self.sharded_layers = shard_model(model)
        self.vision = parts_of(model) is not None  # its vision tower and projector stay whole too (sharding.py)
        return super().prepare(model)

    def same_start(self) -> None:
        """The model started the same before it was sharded, and every rank read the same checkpoint."""

    def describe(self) -> str:
        world = self.ranks.world
        whole = "embeddings, vision tower, projector and output layer" if self.vision else "embeddings and output layer"
        return super().describe() + (
            f" FSDP: {self.sharded_layers} decoder layers sharded over the {world} processes, each holding "
            f"1/{world} of their weights and stepping 1/{world} of the adapter; {whole} whole on each."
        )

    def no_grad_map(self, work: Callable[[list], Any], plans: list) -> list:
        """A filler's result is dropped (see _plans)."""
        kept = super().no_grad_map(lambda group: (work(_unwrap(group)), not isinstance(group, _Filler)), plans)
        return [result for result, keep in kept if keep]

    def clip(self, max_norm: float) -> Tensor:
        from studio.training.sharding import clip_gradients

        return clip_gradients(self.trainable, max_norm)

    def whole_weights(self, model: torch.nn.Module) -> dict[str, Tensor]:
        from studio.training.sharding import whole_trainable

        return whole_trainable(model)

    def load_weights(self, model: torch.nn.Module, weights: dict[str, Tensor]) -> None:
        from studio.training.sharding import load_trainable
        from studio.training.value_head import load_head_state, split_head

        adapter, head = split_head(weights)
        load_trainable(model, adapter)
        load_head_state(model, head)

    def gathered(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Gathered:
        from studio.training.checkpoint import Gathered
        from studio.training.sharding import gather_optimizer

        return Gathered(self.whole_weights(model), gather_optimizer(optimizer))

    def _plans(self, items: list) -> list:
        """Every rank makes as many forward passes as the busiest one; a rank with fewer repeats a group of
        `items` (the step's or split's whole list), whose result is dropped."""
        plans = super()._plans(items)
        groups = [group for lane in plans for group in lane]
        most = self.ranks.most(len(groups), self.plan.device)
        if most == len(groups):
            return plans
        filler = _Filler(self.objective.lane_plans(items[:1])[0][0])
        return [groups + [filler] * (most - len(groups))]

    def _sum_gradients(self) -> None:
        """FSDP has summed the sharded layers' gradients into each rank's slice during backward."""
        from studio.training.sharding import is_sharded

        self.ranks.sum_gradients([p for p in self.trainable if not is_sharded(p)])

    def _pass(self, group: list, forward: Forward) -> Pass | None:
        """A filler's pass still reaches every layer (FSDP's gathers and reduce-scatters) and adds nothing."""
        if not isinstance(group, _Filler):
            return super()._pass(group, forward)

        def nothing(filler: list) -> tuple[Tensor, None]:
            return forward(filler)[0] * 0, None

        return super()._pass(group.group, nothing)


@dataclass(frozen=True)
class _Filler:
    """A group repeated by a rank with fewer forward passes than another (FullySharded._plans)."""

    group: list


def _unwrap(group: Any) -> Any:
    return group.group if isinstance(group, _Filler) else group


def add_tally(total: Tensor | None, more: Tensor | None) -> Tensor | None:
    """Metric tallies add up; None (no tally: SFT and PT) counts as nothing."""
    if total is None or more is None:
        return more if total is None else total
    return total + more
