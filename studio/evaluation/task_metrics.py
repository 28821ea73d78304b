"""Task metrics for Predict: per sample, whether the prediction is right by a rule the run picks.

    exact_match  the prediction equals the reference (surrounding whitespace aside)
    accuracy     equal after normalisation: case, width (full-width letters and digits), whitespace, Chinese and
                 English punctuation
    last_number  the prediction's last number equals the reference's (any width, thousands separators,
                 fractions and simple Chinese numerals read as numbers; inside <answer>...</answer> when present)
    regex        the prediction contains a match of evaluation.metric_pattern
    choice       the first choice letter the prediction names (A, (B), 选C, 答案：D) is the reference's
    file         metric(prompt, prediction, reference) -> float from the user's Python file (it runs code: the
                 browser may ask for it only when the server was started with --allow-remote-code)

Each rule gives 0 or 1 per sample (a file any number), reported as the mean x 100 beside BLEU-4 and ROUGE, and
per sample in the predictions file so the samples behind a number can be found.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from studio.config.evaluation import EvaluationConfig
from studio.training.rewards import accuracy, normalise, reward_file

Metric = Callable[[str, str, str], float]  # (prompt, prediction, reference) -> score
_CHOICE = re.compile(r"(?:^|[^A-Za-z])([A-H])(?![A-Za-z])")


def exact_match(prompt: str, prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def normalised_match(prompt: str, prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def choice(prompt: str, prediction: str, reference: str) -> float:
    found, wanted = _first_choice(prediction), _first_choice(reference)
    return float(found is not None and found == wanted)


def _first_choice(text: str) -> str | None:
    match = _CHOICE.search(unicodedata.normalize("NFKC", text).strip())
    return match.group(1) if match else None


def regex_rule(pattern: str) -> Metric:
    compiled = re.compile(pattern, re.S)
    return lambda prompt, prediction, reference: float(compiled.search(prediction) is not None)


def build_metrics(config: EvaluationConfig) -> dict[str, Metric]:
    """The metrics config.task_metrics names, by name, in that order."""
    makers: dict[str, Callable[[], Metric]] = {
        "exact_match": lambda: exact_match,
        "accuracy": lambda: normalised_match,
        "last_number": lambda: accuracy("last_number"),
        "regex": lambda: regex_rule(config.metric_pattern),
        "choice": lambda: choice,
        "file": lambda: reward_file(config.metric_file or "", function="metric"),
    }
    return {name: makers[name]() for name in config.task_metrics}


def score_samples(
    metrics: dict[str, Metric], prompts: list[str], predictions: list[str], references: list[str]
) -> dict[str, list[float]]:
    """Each metric's score of every sample."""
    return {
        name: [metric(p, answer, reference) for p, answer, reference in zip(prompts, predictions, references)]
        for name, metric in metrics.items()
    }
