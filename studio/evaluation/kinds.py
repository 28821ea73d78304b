"""What Evaluate & Predict measures for each kind of held-out data.

    conversations (sft)   eval loss and perplexity of the answers, BLEU/ROUGE of predictions (runner.py)
    preference pairs      preference accuracy and mean reward margin, rewards of chosen and rejected, against
                          the base model as reference (a reward model's own scores for an rm adapter); loss,
                          perplexity and BLEU/ROUGE on the chosen answers
    KTO feedback          the same rewards: accuracy is the share of answers whose reward has the right sign
    plain text (pt)       perplexity of the held-out text

The kind follows the data: the datasets named in evaluation.datasets, else the run's own
validation split (val.jsonl), else the validation split of data.datasets for training.stage.
A reward is beta * (log-probability under the column's model - under the base model), so the base
model's rewards, margin and accuracy are 0 by construction. A vision-language model scores pairs and
feedback with their prompts' pictures, tokenised and turned into pixels as training did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.config import RunConfig
from studio.data.examples import Example, FeedbackExample, PairwiseExample, TextDocument, from_record
from studio.data.formats import Message
from studio.data.prepare import load_examples, load_stage_examples, split_conversations
from studio.data.registry import DataError, resolve_specs
from studio.locales import Message as Said  # a data Message is a turn of a conversation
from studio.locales import say
from studio.paths import resolve_dataset_dir
from studio.runs.events import EvalStage

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.chat.engine import ChatEngine
    from studio.data.picture_tokens import PictureEncoder
    from studio.data.tokenize import Encoded

PREFERENCE_METRICS = ("reward_accuracy", "reward_margin", "rewards_chosen", "rewards_rejected")


@dataclass
class Sample:
    prompt: list[Message]
    label: str


def kind_of(example: Example) -> str:
    if isinstance(example, PairwiseExample):
        return "pairwise"
    if isinstance(example, FeedbackExample):
        return "kto"
    return "text" if isinstance(example, TextDocument) else "sft"


def load_scored_examples(config: RunConfig, adapter_path: str | None) -> tuple[list, str, str]:
    """(examples of one kind, where they come from (dataset names, or a Message), their kind)."""
    if config.evaluation.datasets:
        data = config.data.model_copy(update={"datasets": config.evaluation.datasets})
        dataset_dir = resolve_dataset_dir(data.dataset_dir)
        specs = resolve_specs(dataset_dir, data.datasets)
        if len({spec.kind for spec in specs}) > 1:
            raise DataError("evaluation.mixed_kinds")
        hub = config.model.hub
        examples = [e for spec in specs for e in load_examples(dataset_dir, spec, data, hub).examples]
        source = ", ".join(config.evaluation.datasets)
    elif adapter_path and (Path(adapter_path).parent / "val.jsonl").is_file():
        lines = (Path(adapter_path).parent / "val.jsonl").read_text(encoding="utf-8").splitlines()
        examples = [from_record(json.loads(line)) for line in lines if line.strip()]
        source = say("evaluation.run_split")
    else:
        loaded = load_stage_examples(config.data, config.training.stage, config.model.hub)
        examples = split_conversations(loaded, config.data.val_size, config.training.seed).val
        source = say("evaluation.stage_split", datasets=", ".join(config.data.datasets))
    if not examples:
        raise DataError("evaluation.no_samples", source=source)
    return examples[: config.evaluation.max_samples], source, kind_of(examples[0])


def generation_samples(examples: list, kind: str) -> list[Sample]:
    """What predictions are generated for and scored against: the answer, the chosen one, the desirable ones."""
    if kind == "sft":
        return [Sample(c[:-1], c[-1]["content"]) for c in examples]
    if kind == "pairwise":
        return [Sample(p.prompt, p.chosen["content"]) for p in examples]
    if kind == "kto":
        return [Sample(f.messages[:-1], f.messages[-1]["content"]) for f in examples if f.desirable]
    return []


def score(
    engine: ChatEngine,
    examples: list,
    kind: str,
    columns: list[str | None],
    config: RunConfig,
    progress: Callable[[EvalStage, int, int], None],
) -> dict[str, dict]:
    """Per column: the kind's likelihood metrics (everything but the generation metrics)."""
    # a vision-language model's pictures are counted and masked as training did (its processor and pixel bounds)
    pictures = engine.pictures.training.encoder(engine.tokenizer) if engine.pictures is not None else None
    documents, answers = _documents(engine.tokenizer, examples, kind, config.data.cutoff_len, pictures)
    scored = (
        list(dict.fromkeys([None] + columns)) if kind in ("pairwise", "kto") else columns
    )  # the base is the reference
    done, total = [0], len(documents) * len(scored)
    progress("loss", 0, total)

    def on_batch(count: int) -> None:
        done[0] += count
        progress("loss", done[0], total)

    logps = {c: engine.answer_logps(documents, c, config.evaluation.batch_size, on_batch) for c in scored}
    metrics = {}
    for column in columns:
        values = logps[column]
        if kind == "text":
            metrics[column or "base"] = _perplexity(values)
        elif kind == "pairwise" and column is not None and column in engine.heads:  # a reward model: its scores
            scores = engine.reward_scores(documents, column, config.evaluation.batch_size)
            metrics[column] = {**_scored_pairs(scores), **_perplexity([values[i] for i in answers])}
        else:
            metrics[column or "base"] = {
                **_rewards(values, logps[None], examples, kind, config.preference.beta),
                **_perplexity([values[i] for i in answers]),
            }
    return metrics


def notes(kind: str, columns: list[str | None]) -> list[Said]:
    if kind in ("pairwise", "kto") and None in columns:
        return [say("evaluation.base_rewards_are_zero")]
    return []


def _documents(
    tokenizer: PreTrainedTokenizerBase,
    examples: list,
    kind: str,
    cutoff_len: int,
    pictures: PictureEncoder | None = None,
) -> tuple[list[Encoded], list[int]]:
    """(documents to score, indices of those whose answers are the 'wanted' ones: chosen or desirable). A pair's or
    feedback example's documents carry its prompt's pictures, encoded by `pictures` (a vision-language model's)."""
    from studio.data.tokenize_kinds import encode_feedback, encode_pair, encode_text_rows

    if kind == "text":
        pieces = [piece for row in encode_text_rows(tokenizer, examples, cutoff_len) for piece in row.pieces]
        return pieces, list(range(len(pieces)))
    if kind == "pairwise":
        encoded = [encode_pair(tokenizer, example, cutoff_len, pictures) for example in examples]
        pairs = [pair for pair in encoded if pair is not None]
        if len(pairs) < len(encoded):
            raise DataError("evaluation.pair_cut_off", cutoff_len=cutoff_len)
        documents = [pair.document(side) for pair in pairs for side in (pair.chosen, pair.rejected)]
        return documents, list(range(0, len(documents), 2))
    encoded_feedback = encode_feedback(tokenizer, examples, cutoff_len, pictures)
    feedback = [item for item in encoded_feedback if item is not None]
    if len(feedback) < len(encoded_feedback):
        raise DataError("evaluation.answer_cut_off", cutoff_len=cutoff_len)
    return [item.document for item in feedback], [i for i, item in enumerate(feedback) if item.desirable]


def _rewards(
    values: list[tuple[float, int]], base: list[tuple[float, int]], examples: list, kind: str, beta: float
) -> dict[str, float]:
    from studio.training.preference import dpo_tally, kto_tally, tally_metrics

    gained = beta * (
        torch.tensor([v for v, _ in values], dtype=torch.float64)
        - torch.tensor([b for b, _ in base], dtype=torch.float64)
    )
    if kind == "pairwise":
        chosen, rejected = gained[0::2], gained[1::2]
        tally = dpo_tally(torch.zeros(len(chosen)), chosen, rejected)
    else:
        desirable = torch.tensor([example.desirable for example in examples])
        tally = kto_tally(torch.zeros(len(gained)), gained, desirable, torch.zeros(()))
    metrics = tally_metrics(tally)
    return {name: round(metrics[name], 4) for name in PREFERENCE_METRICS}


def _scored_pairs(scores: list[float]) -> dict[str, float]:
    """A reward model on held-out pairs: its mean scores, and how often and by how much chosen beats rejected."""
    from studio.training.preference import dpo_tally, tally_metrics

    values = torch.tensor(scores, dtype=torch.float64)
    metrics = tally_metrics(dpo_tally(torch.zeros(len(values) // 2), values[0::2], values[1::2]))
    return {name: round(metrics[name], 4) for name in PREFERENCE_METRICS}


def _perplexity(values: list[tuple[float, int]]) -> dict[str, float]:
    loss = -sum(v for v, _ in values) / max(1, sum(n for _, n in values))
    return {"eval_loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 4)}
