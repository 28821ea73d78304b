"""What Evaluate & Predict measures and on which samples."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from studio.config.base import FieldProblem, Section, field, regular_expression

DEFAULT_JUDGE_PROMPT = (
    "You compare two answers to the same question.\n\n"
    "Question:\n{question}\n\n"
    "Reference answer (may be empty):\n{reference}\n\n"
    "Answer A:\n{a}\n\n"
    "Answer B:\n{b}\n\n"
    "Which answer is better: more correct, more helpful, closer to the reference? Reply on the first line with "
    "only A, B or TIE, then on the second line give one short sentence saying why."
)
JUDGE_FIELDS = ("question", "reference", "a", "b")  # what the judge prompt must show: {question} ...
TaskMetric = Literal["exact_match", "accuracy", "last_number", "regex", "choice", "file"]


class EvaluationConfig(Section):
    datasets: list[str] = field(
        [],
        "Datasets to evaluate on; empty uses the validation split of the training data (the run's own, for a run's "
        "adapter).",
    )
    max_samples: int = field(50, "Evaluate at most this many samples.", ge=1)
    batch_size: int = field(
        32,
        "Samples per batch at most, for the eval loss and the predictions (samples of similar length are batched "
        "together; a memory budget for the KV cache may make a batch smaller).",
        ge=1,
    )
    sample: bool = field(
        False,
        "Sample with the generation settings; off decodes greedily so metrics are reproducible.",
        advanced=True,
    )
    task_metrics: list[TaskMetric] = field(
        ["exact_match", "accuracy"],
        "Per-sample checks of each prediction beside BLEU/ROUGE: exact_match; accuracy (equal after folding case, "
        "width, whitespace and punctuation); last_number; regex (metric_pattern); choice (the option letter); file "
        "(metric_file).",
    )
    metric_pattern: str = field(
        "", "The regex metric: 1 when the prediction contains a match of this regular expression.", advanced=True
    )
    metric_file: str | None = field(
        None,
        "The file metric: a Python file defining metric(prompt, prediction, reference) -> float (it runs code; from "
        "the browser only when the server was started with --allow-remote-code).",
        advanced=True,
    )
    judge: Literal["none", "base", "model", "endpoint"] = field(
        "none",
        "A judge compares the base's and the adapter's answer to each prompt, in both orders: base (the base model "
        "itself, no second load), model (judge_model, loaded beside it) or endpoint (an OpenAI-compatible server at "
        "judge_url).",
    )
    judge_model: str = field(
        "",
        "judge: model: a local model folder or a hub id. judge: endpoint: the model name the server serves (empty: "
        "the first it lists).",
        advanced=True,
    )
    judge_url: str = field(
        "",
        "judge: endpoint: the base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (its key from "
        "OPENAI_API_KEY; from the browser only URLs the server was started with --judge-endpoint).",
        advanced=True,
    )
    judge_prompt: str = field(
        DEFAULT_JUDGE_PROMPT,
        "What the judge is asked: {question}, {reference}, {a} and {b} are filled in; its first line must be A, B "
        "or TIE.",
        advanced=True,
    )
    judge_max_new_tokens: int = field(64, "The longest verdict with its reason, in tokens.", ge=1, advanced=True)
    held_out: bool = field(
        True,
        "Score the held-out samples (eval loss, predictions, BLEU-4/ROUGE); off, only the benchmarks run.",
    )
    benchmarks: list[str] = field(
        [],
        "lm-evaluation-harness tasks or groups to run on the base and the adapter (e.g. ceval_zh_demo, bundled; "
        "mmlu, cmmlu, ceval-valid where their data is on this machine).",
    )
    num_fewshot: int | None = field(
        None, "Few-shot examples per benchmark question; empty uses each task's own setting.", ge=0
    )
    benchmark_limit: int | None = field(
        None, "Score at most this many questions of each benchmark task; empty scores them all.", ge=1
    )
    watch_count: int = field(
        3,
        "Training: answer this many validation prompts greedily at every evaluation step and show them under the "
        "charts (0: none).",
        ge=0,
        le=20,
    )
    watch_prompts: list[str] = field(
        [], "Training: your own prompts to watch instead of the validation ones.", advanced=True
    )
    watch_max_new_tokens: int = field(
        64, "Training: the longest watched answer, in tokens (what watching may cost each evaluation).", ge=1
    )
    output_dir: str = field(
        "evaluations",
        "Where results go when the adapter is not a run's own.",
        advanced=True,
    )

    @field_validator("metric_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return regular_expression(value)

    @field_validator("judge_prompt")
    @classmethod
    def _names_every_field(cls, value: str) -> str:
        missing = next((name for name in JUDGE_FIELDS if "{" + name + "}" not in value), None)
        if missing is not None:
            raise FieldProblem("config.judge_prompt_field", field="{" + missing + "}")
        return value

    @model_validator(mode="after")
    def _metrics_have_their_settings(self) -> EvaluationConfig:
        if "regex" in self.task_metrics and not self.metric_pattern:
            raise FieldProblem("config.regex_metric_needs_pattern")
        if "file" in self.task_metrics and not self.metric_file:
            raise FieldProblem("config.file_metric_needs_file")
        if self.judge == "model" and not self.judge_model.strip():
            raise FieldProblem("config.judge_needs_model")
        if self.judge == "endpoint":
            _http_url(self.judge_url)
        return self


def _http_url(url: str) -> None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldProblem("config.judge_needs_url", url=url)
