"""The worker's protocol: one JSON object per line in RUN_DIR/events.jsonl, one event type per line.

Shared by the worker (writes), the service (reads, and writes `failed` for a worker that died)
and the UI (renders). A run attempt ends with exactly one terminal event.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: float = Field(default_factory=time.time)


class AttemptStarted(_Event):
    """Written by the service before it spawns a worker: everything before it belongs to earlier attempts.

    A resumed attempt replaces the steps after `start_step` (the step its checkpoint was saved at).
    """

    type: Literal["attempt_started"] = "attempt_started"
    attempt: int
    start_step: int = 0
    resumed_from: str | None = None


class Phase(_Event):
    """What the worker is doing before and after the steps (loading can take minutes)."""

    type: Literal["phase"] = "phase"
    name: Literal["loading_model", "loading_data", "tokenizing", "reference", "training", "saving"]
    message: str = ""


class Started(_Event):
    type: Literal["started"] = "started"
    attempt: int
    pid: int
    device: str
    method: str  # in English, for people reading the file
    method_key: str = ""  # the method as the translation table says it (studio/locales), with its arguments
    method_args: dict[str, str] = {}
    method_zh: str = ""  # written by versions before the table: the method in Chinese
    dtype: str
    trainable_params: int
    total_params: int
    train_examples: int
    val_examples: int
    truncated_examples: int
    dropped_examples: int
    total_steps: int
    start_step: int
    stage: str = "sft"  # training.stage: sft, dpo, kto, pt, rm, ppo or grpo (events before stages existed are sft)
    processes: int = 1  # training processes in all (torchrun ranks); 1 without data parallelism


class Step(_Event):
    type: Literal["step"] = "step"
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    grad_norm: float | None
    tokens_per_second: float
    elapsed_s: float
    eta_s: float | None
    rss_mib: float


class Heartbeat(_Event):
    """Between logged steps, at most once a second: how far the run is, so progress moves every step."""

    type: Literal["heartbeat"] = "heartbeat"
    step: int
    total_steps: int
    elapsed_s: float
    eta_s: float | None


class Eval(_Event):
    type: Literal["eval"] = "eval"
    step: int
    epoch: float
    eval_loss: float
    best_eval_loss: float
    patience_left: int | None


class Preference(_Event):
    """DPO/KTO: reward statistics beside a logged step (split train, over the steps since the last one logged)
    or an evaluation (split eval, over the validation split). A reward is beta * (adapter - reference)
    log-probability of an answer; the margin is chosen minus rejected, the accuracy the share of pairs with a
    positive margin (KTO: of answers whose reward has the right sign)."""

    type: Literal["preference"] = "preference"
    step: int
    split: Literal["train", "eval"]
    rewards_chosen: float
    rewards_rejected: float
    reward_margin: float
    reward_accuracy: float
    kl: float | None = None  # KTO's estimate of how far the adapter has moved from the reference


class Rewards(_Event):
    """PPO/GRPO: the reward of sampled answers beside a logged step (split train: the answers trained on since the
    last one logged) or an evaluation (split eval: one greedy answer per validation prompt). `functions`: GRPO's
    reward functions, each function's mean (unweighted) and `function_std` its spread; kl: per token, to the
    reference; flat_groups: the share of answers in groups whose rewards were all equal (no learning signal);
    ended: the share of answers that ended by themselves rather than at max_new_tokens."""

    type: Literal["rewards"] = "rewards"
    step: int
    split: Literal["train", "eval"]
    reward_mean: float
    reward_std: float
    functions: dict[str, float] = {}
    function_std: dict[str, float] = {}
    kl: float | None = None
    completion_length: float
    ended: float
    flat_groups: float | None = None
    clip_fraction: float | None = None
    value_loss: float | None = None


class AnswerRow(BaseModel):
    prompt: str
    answer: str
    reference: str | None = None
    reward: float
    scores: dict[str, float] = {}


class Answers(_Event):
    """PPO/GRPO: a few of the latest sampled answers with their rewards, beside a logged step."""

    type: Literal["answers"] = "answers"
    step: int
    rows: list[AnswerRow]


class WatchedRow(BaseModel):
    prompt: str
    answer: str
    reference: str | None = None


class Watched(_Event):
    """Every stage: the watched prompts (evaluation.watch_prompts, or the first validation prompts) answered
    greedily by the model as it is at an evaluation step."""

    type: Literal["watched"] = "watched"
    step: int
    rows: list[WatchedRow]
    seconds: float


class GpuReading(BaseModel):
    index: int
    name: str
    used_mib: float
    total_mib: float
    utilization_pct: float | None


class Gpu(_Event):
    type: Literal["gpu"] = "gpu"
    gpus: list[GpuReading]


class Checkpoint(_Event):
    type: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str
    reason: Literal["periodic", "abort"]


class Log(_Event):
    type: Literal["log"] = "log"
    level: Literal["info", "warning"]
    message: str


class Finished(_Event):
    type: Literal["finished"] = "finished"
    step: int
    adapter_dir: str
    train_loss: float | None
    best_eval_loss: float | None
    best_step: int | None
    stopped_early: bool
    elapsed_s: float


class Failed(_Event):
    type: Literal["failed"] = "failed"
    error: str
    traceback: str = ""


class Aborted(_Event):
    type: Literal["aborted"] = "aborted"
    step: int
    checkpoint: str | None


EvalStage = Literal["loss", "predict", "judge", "benchmark", "done"]


class EvalProgress(_Event):
    """Evaluate & Predict: how far loss scoring and prediction have come."""

    type: Literal["eval_progress"] = "eval_progress"
    stage: EvalStage
    done: int
    total: int
    elapsed_s: float
    eta_s: float | None


Event = Annotated[
    AttemptStarted
    | Phase
    | Started
    | Step
    | Heartbeat
    | Eval
    | Preference
    | Rewards
    | Answers
    | Watched
    | Gpu
    | Checkpoint
    | Log
    | Finished
    | Failed
    | Aborted
    | EvalProgress,
    Field(discriminator="type"),
]
TERMINAL = (Finished, Failed, Aborted)

_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(line: str | bytes) -> Event:
    return _adapter.validate_json(line)


def dump_event(event: Event) -> str:
    return event.model_dump_json() + "\n"
