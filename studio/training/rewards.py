"""GRPO's rule-based rewards: each a function of (prompt, answer, reference) -> float, weighted and summed.

    accuracy    1 when the answer matches the data's reference: exact (normalised), numeric (its only number) or
                last_number (the last number, inside <answer>...</answer> when there is one)
    format      1 when the whole answer matches a regular expression
    length      1 when the answer's length in characters is inside a range
    repetition  minus the share of repeated character 3-grams (0 for an answer that never repeats itself)
    contains    1 when the answer contains a text;  ends: 1 when it ends with one
    file        the user's reward(prompt, answer, reference) from a Python file (an opt-in: it runs code)

Numbers are read after NFKC normalisation (full-width digits, signs and points become ASCII), with thousands
separators dropped and simple Chinese numerals (三十七, 一百零五, 负二) read as numbers.
"""

from __future__ import annotations

import math
import re
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.config import RewardsConfig
from studio.errors import StudioError

RewardFunction = Callable[[str, str, str], float]
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_CHINESE_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_CHINESE_NUMBER = re.compile(r"负?[零〇一二两三四五六七八九十百千万]+")
_PUNCTUATION = re.compile(r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~]+")


class RewardFileError(StudioError):
    """The user's reward file is missing, defines no reward function, or raised."""


@dataclass(frozen=True)
class Reward:
    name: str
    weight: float
    function: RewardFunction


def normalise(text: str) -> str:
    """Case, width, whitespace and Chinese/English punctuation folded away: what 'exact' compares."""
    return _PUNCTUATION.sub("", unicodedata.normalize("NFKC", text).casefold())


def numbers(text: str) -> list[float]:
    """Every number in `text`, in order: Arabic (any width, thousands separators, fractions) and Chinese."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = _CHINESE_NUMBER.sub(lambda match: f" {_chinese_value(match.group())} ", text)
    return [_value(match.group()) for match in _NUMBER.finditer(text)]


def _value(token: str) -> float:
    if "/" in token:
        top, bottom = token.split("/")
        return float(top) / float(bottom) if float(bottom) else math.nan
    return float(token)


def _chinese_value(token: str) -> str:
    sign, token = (-1, token[1:]) if token.startswith("负") else (1, token)
    if all(c in _CHINESE_DIGITS for c in token) and len(token) > 1:  # digit by digit: 二〇二六
        return str(sign * int("".join(str(_CHINESE_DIGITS[c]) for c in token)))
    total = section = digit = 0
    for char in token:
        if char in _CHINESE_DIGITS:
            digit = _CHINESE_DIGITS[char]
        elif char == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            section += (digit or 1) * _CHINESE_UNITS[char]  # 十 alone is ten
            digit = 0
    return str(sign * (total + section + digit))


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def accuracy(match: str) -> RewardFunction:
    def exact(prompt: str, answer: str, reference: str) -> float:
        return float(normalise(_answer_part(answer)) == normalise(_answer_part(reference)))

    def numeric(prompt: str, answer: str, reference: str) -> float:
        found, wanted = numbers(_answer_part(answer)), numbers(_answer_part(reference))
        return float(len(found) == 1 and bool(wanted) and _same(found[0], wanted[-1]))

    def last_number(prompt: str, answer: str, reference: str) -> float:
        found, wanted = numbers(_answer_part(answer)), numbers(_answer_part(reference))
        return float(bool(found) and bool(wanted) and _same(found[-1], wanted[-1]))

    return {"exact": exact, "numeric": numeric, "last_number": last_number}[match]


def _answer_part(text: str) -> str:
    """The content of the last <answer>...</answer>, or the whole text when it has none."""
    tagged = _ANSWER_TAG.findall(text)
    return tagged[-1] if tagged else text


def format_rule(pattern: str) -> RewardFunction:
    compiled = re.compile(pattern, re.S)
    return lambda prompt, answer, reference: float(compiled.fullmatch(answer.strip()) is not None)


def length_rule(shortest: int, longest: int) -> RewardFunction:
    return lambda prompt, answer, reference: float(shortest <= len(answer.strip()) <= longest)


def repetition(prompt: str, answer: str, reference: str) -> float:
    grams = [answer[i : i + 3] for i in range(len(answer) - 2)]
    return -(1 - len(set(grams)) / len(grams)) if grams else 0.0


def contains_rule(text: str) -> RewardFunction:
    return lambda prompt, answer, reference: float(bool(text) and text in answer)


def ends_rule(text: str) -> RewardFunction:
    return lambda prompt, answer, reference: float(bool(text) and answer.rstrip().endswith(text))


def reward_file(path: str, function: str = "reward") -> RewardFunction:
    """`reward(prompt, answer, reference)` (or the function named `function`) from a Python file; any error it raises
    names the file and its traceback."""
    import runpy

    source = Path(path)
    if not source.is_file():
        raise RewardFileError("training.reward_file_missing", path=path)
    try:
        namespace = runpy.run_path(str(source))
    except Exception:
        raise RewardFileError("training.reward_file_failed", path=path, traceback=_user_traceback(source)) from None
    found = namespace.get(function)
    if not callable(found):
        raise RewardFileError("training.reward_file_no_function", path=path, function=function)

    def call(prompt: str, answer: str, reference: str) -> float:
        try:
            return float(found(prompt, answer, reference))
        except Exception:
            raise RewardFileError("training.reward_file_failed", path=path, traceback=_user_traceback(source)) from None

    return call


def _user_traceback(source: Path) -> str:
    """The traceback from the user's file on: the studio's own frames say nothing to its author."""
    lines = traceback.format_exc().splitlines()
    start = next((i for i, line in enumerate(lines) if str(source.name) in line), 1)
    return "\n".join(lines[:1] + lines[start:])[-2000:]


def build_rewards(config: RewardsConfig) -> list[Reward]:
    """The functions config.weights() names, each made from its settings."""
    makers: dict[str, Callable[[], RewardFunction]] = {
        "accuracy": lambda: accuracy(config.accuracy_match),
        "format": lambda: format_rule(config.format_pattern),
        "length": lambda: length_rule(config.length_min, config.length_max),
        "repetition": lambda: repetition,
        "contains": lambda: contains_rule(config.contains_text),
        "ends": lambda: ends_rule(config.ends_text),
        "file": lambda: reward_file(config.file or ""),
    }
    chosen = [Reward(name, weight, makers[name]()) for name, weight in config.weights().items()]
    if not chosen:
        raise StudioError("training.no_reward_function")
    return chosen


def score(rewards: list[Reward], prompt: str, answer: str, reference: str) -> tuple[float, dict[str, float]]:
    """(weighted total, each function's unweighted value)."""
    values = {reward.name: reward.function(prompt, answer, reference) for reward in rewards}
    return sum(reward.weight * values[reward.name] for reward in rewards), values
