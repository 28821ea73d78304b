"""BLEU-4 and ROUGE-1/2/L computed as LlamaBoard computes them, so numbers compare with what users know.

ROUGE: F-scores of rouge-chinese on jieba's words joined by spaces, whitespace words included:
rouge-chinese then cuts sentences at the line breaks they carry, which changes ROUGE-L. A side
with no word but whitespace scores 0. BLEU-4: NLTK sentence BLEU on characters with smoothing
method 3, for every pair, empty ones included. Both per sample, times 100, rounded to 4 places,
then averaged. Checked against LlamaBoard's own code on 45 pairs (bench/lf_metric_parity.py).
"""

from __future__ import annotations

import logging
import statistics

METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def _words(text: str) -> str:
    """jieba's words joined by spaces; its whitespace words stay, line breaks included."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return " ".join(jieba.cut(text))


def sample_scores(prediction: str, reference: str) -> dict[str, float]:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hypothesis, truth = _words(prediction), _words(reference)
    if hypothesis.split() and truth.split():
        scores = Rouge().get_scores(hypothesis, truth)[0]
        rouge = {key: scores[key]["f"] for key in ("rouge-1", "rouge-2", "rouge-l")}
    else:
        rouge = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    return {"bleu-4": round(float(bleu) * 100, 4), **{k: round(v * 100, 4) for k, v in rouge.items()}}


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Per-sample scores averaged over the samples."""
    if not predictions:
        return {metric: 0.0 for metric in METRICS}
    per_sample = [sample_scores(p, r) for p, r in zip(predictions, references)]
    return {metric: round(statistics.fmean(s[metric] for s in per_sample), 4) for metric in METRICS}
