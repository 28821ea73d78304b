"""What a sweep varies: config fields, each with the values to try (a grid) or a range to draw from (random).

    spec = SweepSpec.from_lines("training.learning_rate = 1e-4, 2e-4\\nlora.rank = 8, 16")          # the page
    spec = SweepSpec.from_sets(["training.learning_rate=1e-5..1e-3:log"], mode="random", count=6)  # the CLI

A value is written as after `--section.field` on the command line (read as YAML by RunConfig.with_overrides),
so `2e-4`, `true`, `cosine` and `[a, b]` mean what they mean there. A range `low..high` (`:log` for a log scale)
is drawn from in random sweeps; whole-number ends draw whole numbers. A field given one value is set for every
run of the sweep without being varied (its value is not in the run names).
"""

from __future__ import annotations

import math
import random
import re
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from studio.config.base import FieldProblem, describe_validation_error, field
from studio.errors import StudioError
from studio.locales import Joined

MAX_RUNS = 64  # a sweep is queued whole and run one at a time: more than this is a mistake, not a plan
METRIC_DEFAULT = "best_eval_loss"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*(?::\s*(log|linear))?\s*$", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*[-+]?\d+\s*$")


_Model = TypeVar("_Model", bound=BaseModel)


class SweepError(StudioError):
    """A sweep that cannot be planned, queued or found; the message names the field, value or sweep."""


class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = field(..., "The config field varied, as section.field (e.g. training.learning_rate).")
    values: list[str] = field(
        [], "The values tried, each written as after --section.field on the command line (e.g. 2e-4)."
    )
    low: float | None = field(None, "A range's lower end: random sweeps draw each run's value from low..high.")
    high: float | None = field(None, "A range's upper end.")
    scale: Literal["linear", "log"] = field(
        "linear", "How a range is drawn from: linear (evenly) or log (evenly in orders of magnitude)."
    )
    integer: bool = field(False, "The range draws whole numbers (both its ends were written as whole numbers).")

    @model_validator(mode="after")
    def _values_or_range(self) -> Axis:
        if not self.is_range and not self.values:
            raise FieldProblem("sweeps.axis_empty", path=self.path)
        if self.is_range and self.values:
            raise FieldProblem("sweeps.axis_both", path=self.path)
        if self.is_range and (self.low is None or self.high is None or not self.low < self.high):
            raise FieldProblem("sweeps.range_order", path=self.path, low=self.low, high=self.high)
        if self.scale == "log" and self.is_range and (self.low or 0) <= 0:
            raise FieldProblem("sweeps.log_needs_positive", path=self.path, low=self.low)
        return self

    @property
    def is_range(self) -> bool:
        return self.low is not None or self.high is not None

    @property
    def varies(self) -> bool:
        return self.is_range or len(self.values) > 1

    @classmethod
    def parse(cls, text: str) -> Axis:
        """`section.field = v1, v2` (values, split at commas outside brackets and quotes) or `= low..high[:log]`."""
        path, equals, rest = text.partition("=")
        path = path.strip()
        if not equals or not path or not rest.strip():
            raise SweepError("sweeps.bad_line", line=text.strip())
        found = _RANGE.match(rest)
        if found:
            low, high, scale = found.groups()
            whole = bool(_WHOLE.match(low) and _WHOLE.match(high))
            return _checked(
                cls, path=path, low=float(low), high=float(high), scale=(scale or "linear").lower(), integer=whole
            )
        values = split_values(rest)
        if any(not value for value in values):
            raise SweepError("sweeps.empty_value", path=path, line=text.strip())
        return _checked(cls, path=path, values=values)

    def draw(self, rng: random.Random) -> str:
        """One value from the range, as the run's config gets it and its name shows it (3 significant digits)."""
        assert self.low is not None and self.high is not None
        if self.scale == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.integer:
            return str(min(int(self.high), max(int(self.low), round(value))))
        return short_number(value)

    def written(self) -> str:
        """The axis as a line of the page's box (and after --set): what parse reads back."""
        if self.is_range:
            ends = [str(int(v)) if self.integer else short_number(v) for v in (self.low or 0, self.high or 0)]
            return f"{self.path} = {ends[0]}..{ends[1]}" + (":log" if self.scale == "log" else "")
        return f"{self.path} = {', '.join(self.values)}"


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    axes: list[Axis] = field(..., "The fields varied, in the order the run names show them.", min_length=1)
    mode: Literal["grid", "random"] = field(
        "grid", "grid: one run per combination of the values; random: `count` runs, each value drawn at random."
    )
    count: int = field(4, "How many runs a random sweep draws.", ge=1, le=MAX_RUNS)
    seed: int = field(0, "The seed of a random sweep's draws: the same seed draws the same runs.")
    metric: str = field(METRIC_DEFAULT, "What Compare ranks the sweep's runs by first (best eval loss by default).")

    @model_validator(mode="after")
    def _fits(self) -> SweepSpec:
        paths = [axis.path for axis in self.axes]
        repeated = sorted({path for path in paths if paths.count(path) > 1})
        if repeated:
            raise FieldProblem("sweeps.axis_twice", path=repeated[0])
        if self.mode == "grid":
            ranged = [axis.path for axis in self.axes if axis.is_range]
            if ranged:
                raise FieldProblem("sweeps.range_needs_random", path=ranged[0])
            if self.size > MAX_RUNS:
                raise FieldProblem("sweeps.too_many", runs=self.size, limit=MAX_RUNS)
        return self

    @property
    def size(self) -> int:
        """How many runs the sweep plans."""
        return self.count if self.mode == "random" else math.prod(len(axis.values) for axis in self.axes)

    @classmethod
    def from_lines(cls, text: str, mode: str = "grid", count: int = 4, seed: int = 0) -> SweepSpec:
        """The page's box: one field per line; blank lines and lines starting with # are skipped."""
        lines = [line for line in (text or "").splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return cls.from_sets(lines, mode, count, seed)

    @classmethod
    def from_sets(
        cls, sets: list[str], mode: str = "grid", count: int = 4, seed: int = 0, metric: str = METRIC_DEFAULT
    ) -> SweepSpec:
        """`--set path=values` of the command line, one per field."""
        if not sets:
            raise SweepError("sweeps.no_axes")
        axes = [Axis.parse(text) for text in sets]
        return _checked(cls, axes=axes, mode=mode, count=count, seed=seed, metric=metric)


def _checked(model: type[_Model], **values: object) -> _Model:
    """The model built, or a SweepError that names each problem (pydantic's own errors in the studio's words)."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = []
        for item, described in zip(error.errors(), describe_validation_error(error)):
            said = item.get("ctx", {}).get("error")  # the sweep's own refusals name their field already
            problems.append(said.message if isinstance(said, FieldProblem) else described)
        raise SweepError("sweeps.invalid", problems=Joined("list.lines", problems)) from None


def split_values(text: str) -> list[str]:
    """`1e-4, [a, b], "x, y"` -> ['1e-4', '[a, b]', '"x, y"']: commas inside brackets or quotes do not split."""
    values: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def short_number(value: float) -> str:
    """3 significant digits, an exponent written short: 0.000237 -> '2.37e-4', 0.05 -> '0.05', 12.0 -> '12'."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        text = f"{value:.3g}"
        return text if "e" not in text else _short_exponent(text)
    return _short_exponent(f"{value:.2e}")


def _short_exponent(text: str) -> str:
    mantissa, exponent = text.split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent)}"
