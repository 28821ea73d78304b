"""What ppo and grpo share: answers sampled from the model being trained, scored, and their statistics.

Sampling runs the model as it is in training (adapter on, dropout off) with the run's generation
settings, in one batch, drawing from a generator seeded by (training.seed, step), so a run's samples repeat
with its seed and a resumed run samples what the interrupted one would have. The reference is the same
weights with the adapter turned off: no copy. A prompt's answers share one run of the prompt, when they are
sampled (its cache copied per answer) and when they are scored and trained on where the layout allows
(`answer_losses`): a GRPO group of n answers costs its prompt once, not n times.

Statistics travel as a tally (a vector of sums, `RewardTally`) like the preference stages', so CPU lanes,
ranks and logging windows add up in any grouping.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from studio.config import GenerationConfig, GrpoConfig, PpoConfig
from studio.data.tokenize import IGNORE_INDEX
from studio.data.tokenize_kinds import EncodedPrompt
from studio.modeling.chat_templates import stop_ids
from studio.modeling.decode import decode, left_padded, narrow_head
from studio.runs.events import AnswerRow, Answers, Event, Rewards
from studio.training.rewards import Reward

if TYPE_CHECKING:
    from studio.training.token_losses import TokenLosses

# (function of a group, lane plans) -> the function's results, group by group
NoGradMap = Callable[[Callable[[list], Any], list], list]
# items -> this process's share of them (all of them with one process)
Share = Callable[[list], list]


def everything(items: list) -> list:
    return items


@dataclass(eq=False)
class Rollout:
    """One sampled answer: trained as prompt + completion with only the completion labelled."""

    prompt: EncodedPrompt
    completion: list[int]  # with the end token when the answer ended by itself
    text: str
    ended: bool
    reward: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)  # each reward function's value (grpo)
    advantage: float = 0.0  # grpo: the answer's advantage within its group
    flat_group: bool = False  # grpo: every answer of its group scored the same (no signal)
    reference: torch.Tensor | None = None  # per-token log-probabilities under the reference
    old: torch.Tensor | None = None  # ppo: per-token log-probabilities at sampling
    values: torch.Tensor | None = None  # ppo: per-token values at sampling
    advantages: torch.Tensor | None = None  # ppo: per-token GAE advantages
    returns: torch.Tensor | None = None  # ppo: per-token value targets
    truncated: bool = False

    @property
    def input_ids(self) -> list[int]:
        return self.prompt.prompt + self.completion

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt.prompt) + self.completion


@dataclass
class Reinforcement:
    """What ppo and grpo sample with and score by; built by the worker from the run config."""

    tokenizer: Any
    generation: GenerationConfig
    seed: int
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    ppo: PpoConfig = field(default_factory=PpoConfig)
    rewards: list[Reward] = field(default_factory=list)  # grpo's functions
    reward_model: Any = None  # ppo: a RewardScorer (reward_scorer.py)
    shown: int = 4  # answers reported with each logged step

    def text(self, completion: list[int]) -> str:
        return self.tokenizer.decode(completion, skip_special_tokens=True)


class Sampler:
    def __init__(self, token_losses: TokenLosses, reinforce: Reinforcement):
        self.token_losses, self.reinforce = token_losses, reinforce
        self.model = token_losses.model
        # the trainer's compute context (its autocast), which sampling on the calling thread must set itself
        self.compute: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def stop_ids(self) -> set[int]:
        return stop_ids(self.model, self.reinforce.tokenizer)

    def sample(self, prompts: list[EncodedPrompt], count: int, step: int, greedy: bool = False) -> list[Rollout]:
        """`count` answers to each prompt, prompt by prompt (a prompt's answers side by side), in one batch on
        the calling thread with all of this process's cores: decoding a few rows streams every weight once per
        token, and one stream on two cores beats a lane per core streaming them twice (GRPO bench on 2 cores:
        75 -> 65 s)."""
        rows = [prompt for prompt in prompts for _ in range(count)]
        if not rows:
            return []
        generation = self.reinforce.generation
        if greedy:
            generation = generation.model_copy(update={"temperature": 0.0})
        with sampling_mode(self.model), torch.no_grad(), self.compute():
            answers = self._generate(rows, generation, _seed(self.reinforce.seed, step))
        stops = self.stop_ids()
        return [self._rollout(prompt, tokens, stops) for prompt, tokens in zip(rows, answers)]

    def _generate(self, rows: list[EncodedPrompt], generation: GenerationConfig, seed: int) -> list[list[int]]:
        device = self.token_losses.device
        runs = _runs(rows)  # a prompt's answers: one run of the prompt, then a copy of its cache per answer
        ids, mask = left_padded([run[0].prompt for run in runs], self.reinforce.tokenizer.pad_token_id or 0)
        copies = torch.tensor([index for index, run in enumerate(runs) for _ in run])
        generator = torch.Generator(device=device).manual_seed(seed)
        return decode(
            self.model,
            ids.to(device),
            mask.to(device),
            generation,
            self.stop_ids(),
            keep_end=True,
            generator=generator,
            copies=copies,
        )

    def _rollout(self, prompt: EncodedPrompt, tokens: list[int], stops: set[int]) -> Rollout:
        ended = bool(tokens) and tokens[-1] in stops
        text = self.reinforce.text(tokens[:-1] if ended else tokens)
        return Rollout(prompt, tokens, text, ended)

    def log_probabilities(self, rollouts: list[Rollout], no_grad_map: NoGradMap, reference: bool) -> list[torch.Tensor]:
        """Per-token log-probabilities of each rollout's completion, under the reference (adapter off) or the model
        as it is now."""
        if not rollouts:
            return []
        plans = plan_answers(self.token_losses, rollouts)
        groups = [group for lane in plans for group in lane]
        self.model.eval()
        with self.model.disable_adapter() if reference else contextlib.nullcontext():
            losses = no_grad_map(lambda group: answer_losses(self.token_losses, group).float(), plans)
        self.model.train()
        found: dict[int, torch.Tensor] = {}
        for group, group_losses in zip(groups, losses):
            for rollout, values in zip(group, split_tokens(group_losses, group)):
                found[id(rollout)] = -values
        return [found[id(rollout)] for rollout in rollouts]


@dataclass(eq=False)
class PromptAnswers:
    """A prompt with the answers sampled for it: planned as one unit, so that its prompt runs once for all of them."""

    rollouts: list[Rollout]

    @property
    def input_ids(self) -> list[int]:
        return self.rollouts[0].prompt.prompt + [token for rollout in self.rollouts for token in rollout.completion]

    @property
    def labels(self) -> list[int]:
        answers = [token for rollout in self.rollouts for token in rollout.completion]
        return [IGNORE_INDEX] * len(self.rollouts[0].prompt.prompt) + answers


def by_prompt(rollouts: list[Rollout]) -> list[list[Rollout]]:
    """Runs of consecutive rollouts answering the same prompt."""
    return _runs(rollouts, key=lambda rollout: rollout.prompt)


def _runs(items: list[Any], key: Callable[[Any], Any] = lambda item: item) -> list[list[Any]]:
    """Runs of consecutive items whose keys are the same object."""
    runs: list[list[Any]] = []
    for item in items:
        if runs and key(runs[-1][0]) is key(item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def plan_answers(token_losses: TokenLosses, rollouts: list[Rollout]) -> list[list[list[Rollout]]]:
    """Lane plans of `rollouts` in which a prompt's answers stay together where its prompt can run once."""
    if not token_losses.shares_prompts:
        return token_losses.lane_plans(rollouts)
    plans = token_losses.lane_plans([PromptAnswers(run) for run in by_prompt(rollouts)])
    return [[[rollout for unit in group for rollout in unit.rollouts] for group in lane] for lane in plans]


def answer_losses(token_losses: TokenLosses, rollouts: list[Rollout]) -> torch.Tensor:
    """Per-token losses of each rollout's completion, completion after completion; the answers to one prompt
    share one run of it where the layout allows (`TokenLosses.shares_prompts`)."""
    if not token_losses.shares_prompts or any(not rollout.prompt.prompt for rollout in rollouts):
        return token_losses(rollouts)
    segments = [(run[0].prompt.prompt, [rollout.completion for rollout in run]) for run in by_prompt(rollouts)]
    losses, _ = token_losses.shared_losses(segments)
    return losses


def split_tokens(values: torch.Tensor, group: list[Rollout]) -> tuple[torch.Tensor, ...]:
    """A group's per-token values (completion after completion) as one tensor per rollout."""
    return torch.split(values, [len(rollout.completion) for rollout in group])


@contextlib.contextmanager
def sampling_mode(model: Any) -> Iterator[None]:
    """Dropout off and a padding-aware attention while answers are sampled (the packed attention the trainer uses
    knows nothing of left padding), with the adapter folded into its weights where they are not quantised and the
    output layer in its few-rows form (`narrow_head`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # full and freeze: no adapter
    trained = attention_of(base.config)
    model.eval()
    base.set_attn_implementation("sdpa")
    try:
        with _folded_adapter(model), narrow_head(base):
            yield
    finally:
        base.set_attn_implementation(trained)
        model.train()


def attention_of(config: Any) -> str | dict[str, str]:
    """The attention implementation of a model, and of each part with its own config: a vision-language model's
    language model trains with the packed one while its vision tower keeps its own, and both must come back."""
    parts = {key: getattr(config, key) for key in getattr(config, "sub_configs", {})}
    own = {key: part._attn_implementation for key, part in parts.items() if part is not None}
    return {"": config._attn_implementation, **own} if own else config._attn_implementation


@contextlib.contextmanager
def _folded_adapter(model: Any) -> Iterator[None]:
    """Each adapted layer decodes with one matmul instead of three: while answers are sampled, its weight is a new
    tensor W + BA and the adapter is off. The original weight is put back untouched (never W + BA - BA, which
    would drift in bf16). Quantised weights keep the adapter as it is."""
    from peft.tuners.lora import LoraLayer

    # only LoRA's delta adds to the weight (OFT's rotates it)
    layers: list[Any] = [m for m in model.modules() if isinstance(m, LoraLayer) and hasattr(m, "get_delta_weight")]
    bases = [layer.get_base_layer() for layer in layers]
    if not layers or any(not torch.is_floating_point(b.weight) or b.weight.dtype.itemsize < 2 for b in bases):
        yield
        return
    originals = [base.weight for base in bases]
    try:
        with torch.no_grad():
            for layer, base in zip(layers, bases):
                delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters)
                folded = base.weight + delta.to(base.weight.dtype)
                base.weight = torch.nn.Parameter(folded, requires_grad=False)
        with model.disable_adapter():
            yield
    finally:
        for base, weight in zip(bases, originals):
            base.weight = weight


def _seed(seed: int, step: int) -> int:
    return zlib.crc32(f"{seed}:{step}".encode())


def own_share(items: list[EncodedPrompt], share: Share) -> list[EncodedPrompt]:
    """This process's share of `items`; every item's earlier answers (or another process's) are forgotten."""
    for item in items:
        item.rollouts = []
    return share(items)


class SamplingObjective:
    """What the ppo and grpo objectives share: their items are prompts, what they train on is the answers sampled
    for them (`item.rollouts`, set by the stage's `prepare_step`), and they evaluate by the reward of one greedy
    answer per validation prompt."""

    needs_reference: Literal[False] = False
    preference = False
    samples = True  # each process knows only its own share's answers
    tallies = True
    stage: str

    def __init__(self, token_losses: TokenLosses, reinforce: Reinforcement, tally: RewardTally):
        self.token_losses, self.reinforce, self.tally = token_losses, reinforce, tally
        self.sampler = Sampler(token_losses, reinforce)
        self.latest: list[Rollout] = []  # the answers the next logged step shows

    def score(self, rollouts: list[Rollout], training: bool) -> None:
        """Each rollout's reward (and its functions' values); `training`: may update running statistics."""
        raise NotImplementedError  # each stage's own

    def prepare_eval(self, items: list[EncodedPrompt], no_grad_map: NoGradMap, share: Share = everything) -> None:
        items = own_share(items, share)
        rollouts = self.sampler.sample(items, 1, 0, greedy=True)
        self.score(rollouts, training=False)
        for item, rollout in zip(items, rollouts):
            item.rollouts = [rollout]

    def rollouts(self, items: list) -> list[Rollout]:
        return [rollout for item in items for rollout in item.rollouts]

    def lane_plans(self, items: list) -> list:
        return plan_answers(self.token_losses, self.rollouts(items))

    def tokens(self, items: list) -> int:
        """Tokens of the answers sampled for `items` and trained on (prompt and answer of each)."""
        return sum(len(r.input_ids) for r in self.rollouts(items))

    def eval_tally(self, group: list[Rollout]) -> torch.Tensor:
        return self.tally.of(group, self.token_losses.device)

    def empty_tally(self, device: str) -> torch.Tensor:
        return self.tally.empty(device)

    def eval_metrics(self, tally: torch.Tensor, items: list) -> dict[str, float]:
        return {"reward_mean": self.tally.metrics(tally)["reward_mean"]}

    def report(self, step: int, split: Literal["train", "eval"], tally: torch.Tensor) -> list[Event]:
        events: list[Event] = [self.tally.event(step, split, tally, self.stage)]
        return events + (answers_event(step, self.latest, self.reinforce) if split == "train" else [])


# -- statistics -----------------------------------------------------------------------------------


class RewardTally:
    """The layout of the sums ppo and grpo report: fixed counts, then each reward function's sum and square sum."""

    COUNT, REWARD, REWARD_SQ, KL, TOKENS, LENGTH, FLAT, CLIPPED, ENDED, VALUE_LOSS = range(10)
    FIXED = 10

    def __init__(self, functions: list[str], measures_kl: bool = True):
        self.functions = functions
        self.measures_kl = measures_kl  # grpo with beta 0 never computes the reference: its KL is unknown

    @property
    def size(self) -> int:
        return self.FIXED + 2 * len(self.functions)

    def empty(self, device: str | torch.device) -> torch.Tensor:
        return torch.zeros(self.size, dtype=torch.float64, device=device)

    def of(
        self,
        rollouts: list[Rollout],
        device: str | torch.device,
        *,
        kl: torch.Tensor | float = 0.0,
        clipped: torch.Tensor | float = 0.0,
        value_loss: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        """The sums of `rollouts` (kl, clipped: summed over their tokens; value_loss: summed over rollouts)."""
        tally = self.empty(device)
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
        tally[self.COUNT] = len(rollouts)
        tally[self.REWARD] = rewards.sum()
        tally[self.REWARD_SQ] = rewards.pow(2).sum()
        tally[self.KL] = torch.as_tensor(kl, dtype=torch.float64).detach().to(device)
        tally[self.TOKENS] = sum(len(r.completion) for r in rollouts)
        tally[self.LENGTH] = sum(len(r.completion) for r in rollouts)
        tally[self.FLAT] = sum(r.flat_group for r in rollouts)
        tally[self.CLIPPED] = torch.as_tensor(clipped, dtype=torch.float64).detach().to(device)
        tally[self.ENDED] = sum(r.ended for r in rollouts)
        tally[self.VALUE_LOSS] = torch.as_tensor(value_loss, dtype=torch.float64).detach().to(device)
        for index, name in enumerate(self.functions):
            values = torch.tensor([r.scores.get(name, 0.0) for r in rollouts], dtype=torch.float64)
            tally[self.FIXED + 2 * index] = values.sum()
            tally[self.FIXED + 2 * index + 1] = values.pow(2).sum()
        return tally

    def metrics(self, tally: torch.Tensor) -> dict[str, Any]:
        values = tally.tolist()
        count, tokens = max(values[self.COUNT], 1.0), max(values[self.TOKENS], 1.0)
        functions = {}
        for index, name in enumerate(self.functions):
            total, squares = values[self.FIXED + 2 * index], values[self.FIXED + 2 * index + 1]
            functions[name] = (total / count, _spread(total, squares, count))
        return {
            "reward_mean": values[self.REWARD] / count,
            "reward_std": _spread(values[self.REWARD], values[self.REWARD_SQ], count),
            "kl": values[self.KL] / tokens,
            "completion_length": values[self.LENGTH] / count,
            "flat_groups": values[self.FLAT] / count,
            "clip_fraction": values[self.CLIPPED] / tokens,
            "ended": values[self.ENDED] / count,
            "value_loss": values[self.VALUE_LOSS] / count,
            "functions": functions,
        }

    def event(self, step: int, split: Literal["train", "eval"], tally: torch.Tensor, stage: str) -> Rewards:
        metrics = self.metrics(tally)
        functions = metrics.pop("functions")
        return Rewards(
            step=step,
            split=split,
            reward_mean=metrics["reward_mean"],
            reward_std=metrics["reward_std"],
            functions={name: mean for name, (mean, _) in functions.items()},
            function_std={name: spread for name, (_, spread) in functions.items()},
            kl=metrics["kl"] if split == "train" and self.measures_kl else None,
            completion_length=metrics["completion_length"],
            ended=metrics["ended"],
            flat_groups=metrics["flat_groups"] if stage == "grpo" and split == "train" else None,
            clip_fraction=metrics["clip_fraction"] if split == "train" else None,
            value_loss=metrics["value_loss"] if stage == "ppo" and split == "train" else None,
        )


def _spread(total: float, squares: float, count: float) -> float:
    mean = total / count
    return math.sqrt(max(0.0, squares / count - mean * mean))


def answers_event(step: int, rollouts: list[Rollout], reinforce: Reinforcement) -> list[Event]:
    """The answers a person watches: the first `shown` of the step's latest samples."""
    if not rollouts:
        return []
    rows = [
        AnswerRow(
            prompt=(rollout.prompt.question or reinforce.text(rollout.prompt.prompt))[-400:],
            answer=rollout.text[:1000],
            reference=rollout.prompt.reference[:200] or None,
            reward=round(rollout.reward, 4),
            scores={name: round(value, 4) for name, value in rollout.scores.items()},
        )
        for rollout in rollouts[: reinforce.shown]
    ]
    return [Answers(step=step, rows=rows)]
