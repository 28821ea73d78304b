"""BLEU-4 and ROUGE-1/2/L computed as LlamaBoard computes them, so numbers compare with what users know.

ROUGE: F-scores of rouge-chinese on jieba-segmented words. BLEU-4: NLTK sentence BLEU on
characters with smoothing method 3. Both per sample, averaged, times 100. jieba segments
English into words and spaces as well, so the same code serves both languages.
"""

from __future__ import annotations

import logging
import statistics

METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")


def _segment(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [word for word in jieba.cut(text) if word.strip()]


def sample_scores(prediction: str, reference: str) -> dict[str, float]:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hypothesis, truth = _segment(prediction), _segment(reference)
    if hypothesis and truth:
        scores = Rouge().get_scores(" ".join(hypothesis), " ".join(truth))[0]
        rouge = {key: scores[key]["f"] for key in ("rouge-1", "rouge-2", "rouge-l")}
    else:
        rouge = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3) if prediction and reference else 0.0
    return {"bleu-4": round(float(bleu) * 100, 4), **{k: round(v * 100, 4) for k, v in rouge.items()}}


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Per-sample scores averaged over the samples."""
    if not predictions:
        return {metric: 0.0 for metric in METRICS}
    per_sample = [sample_scores(p, r) for p, r in zip(predictions, references)]
    return {metric: round(statistics.fmean(s[metric] for s in per_sample), 4) for metric in METRICS}
