"""Metrics against hand-computed cases."""

import pytest

from studio.evaluation.metrics import corpus_scores, sample_scores


def test_identical_strings_score_100():
    for text in ("我爱北京天安门", "the cat sat on the mat"):
        assert sample_scores(text, text) == {"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0}


def test_disjoint_strings_score_0():
    assert sample_scores("abc", "xyz") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert sample_scores("", "参考") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_chinese_pair_with_known_segmentation():
    # jieba: 今天天气 / 很 / 好  vs  今天天气 / 不错 -> one shared word; P = 1/3, R = 1/2, F = 0.4
    # BLEU on characters: 1- to 4-gram precisions 4/6, 3/5, 2/4, 1/3, equal lengths (no brevity penalty)
    scores = sample_scores("今天天气很好", "今天天气不错")
    assert scores["rouge-1"] == pytest.approx(40.0) and scores["rouge-l"] == pytest.approx(40.0)
    assert scores["rouge-2"] == 0.0
    assert scores["bleu-4"] == pytest.approx(100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-3)


def test_corpus_scores_average_the_samples():
    scores = corpus_scores(["我爱北京天安门", "abc"], ["我爱北京天安门", "xyz"])
    assert scores == {"bleu-4": 50.0, "rouge-1": 50.0, "rouge-2": 50.0, "rouge-l": 50.0}


def test_equal_to_llamaboard_on_any_text():
    """45 pairs (newlines, emoji, empty, whitespace-only, long; Chinese and English) scored by LlamaBoard's
    own ComputeSimilarity in LLaMA-Factory 0.9.5's venv (bench/lf_metric_parity.py --write-fixture)."""
    import json
    from pathlib import Path

    pairs = json.loads((Path(__file__).parent / "fixtures" / "lf_metric_pairs.json").read_text(encoding="utf-8"))
    assert len(pairs) >= 40
    for pair in pairs:
        ours = sample_scores(pair["prediction"], pair["reference"])
        assert ours == pytest.approx(pair["llamaboard"], abs=1e-4), (pair["prediction"], pair["reference"])
