"""A local judge: a model compares the base's and the adapter's answer to the same prompt.

Each sample is judged twice, the answers in both orders (A = base, B = adapter, then swapped), so a judge that
prefers whichever answer comes first cancels out: the adapter wins a sample when it wins one order and does not
lose the other, loses it symmetrically, and ties otherwise (a judge that contradicts itself is a tie). The judge
is any model the studio can load: the base itself (the engine's model with every adapter off, no second load)
or another local model (loaded beside it). Its prompt is evaluation.judge_prompt, shown and editable; it must
ask for a first line `A`, `B` or `TIE` and a one-line reason. Prompts are answered in batches (predict.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

Ask = Callable[[list[str]], list[str]]  # judge prompts -> the judge's replies, in order

_VERDICT = re.compile(r"\b(TIE|A|B)\b|(平局|相同)", re.IGNORECASE)


@dataclass
class Verdict:
    outcome: str  # "win", "tie" or "loss", for the adapter
    reason: str  # the judge's reasons, first order then swapped
    votes: tuple[str, str]  # the judge's raw verdicts: base first (A = base), then adapter first


@dataclass
class JudgeReport:
    verdicts: list[Verdict] = field(default_factory=list)

    def rates(self) -> dict[str, float]:
        """The adapter's win, tie and loss rates in percent."""
        count = max(1, len(self.verdicts))
        return {
            f"judge_{outcome}": round(100 * sum(v.outcome == outcome for v in self.verdicts) / count, 2)
            for outcome in ("win", "tie", "loss")
        }


def judge(
    ask: Ask, questions: list[str], references: list[str], base: list[str], adapter: list[str], prompt: str
) -> JudgeReport:
    """Every sample judged in both orders by `ask` (one batch for all of them)."""
    samples = list(zip(questions, references, base, adapter))
    prompts = [_filled(prompt, q, r, a=b_, b=ad) for q, r, b_, ad in samples]  # A = base
    prompts += [_filled(prompt, q, r, a=ad, b=b_) for q, r, b_, ad in samples]  # A = adapter
    replies = ask(prompts)
    verdicts = []
    for first, second in zip(replies[: len(samples)], replies[len(samples) :]):
        votes = (_vote(first), _vote(second))
        # +1 where the adapter won an order, -1 where it lost it: it is B in the first, A in the second
        points = ({"B": 1, "A": -1}.get(votes[0], 0), {"A": 1, "B": -1}.get(votes[1], 0))
        outcome = "win" if min(points) >= 0 < max(points) else "loss" if max(points) <= 0 > min(points) else "tie"
        verdicts.append(Verdict(outcome, f"{_reason(first)} | {_reason(second)}", votes))
    return JudgeReport(verdicts)


def _filled(prompt: str, question: str, reference: str, *, a: str, b: str) -> str:
    """The prompt with its fields filled in one pass (an answer that contains "{b}" stays as it is)."""
    values = {"question": question, "reference": reference, "a": a, "b": b}
    return re.sub(r"\{(question|reference|a|b)\}", lambda match: values[match.group(1)], prompt)


def _vote(reply: str) -> str:
    """A, B or TIE from the reply's first verdict word; TIE when it gives none."""
    match = _VERDICT.search(reply.strip().splitlines()[0] if reply.strip() else "")
    if match is None:
        return "TIE"
    return "TIE" if match.group(2) else match.group(1).upper()


def _reason(reply: str) -> str:
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else "")[:300]
