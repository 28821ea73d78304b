"""Weighted combinations of LoRA adapters (peft's `add_weighted_adapter`): checked here, made on a PeftModel that holds
the adapters, for Chat (a combination answers like any adapter) and Export (made again from the same folders, merged).

What peft does per type (peft/tuners/lora/model.py): `linear` (and `ties`, `dare_*`, `magnitude_prune`) mix the A and
B matrices each with sqrt(weight * scaling), so the delta holds cross terms and every adapter needs the same rank;
`cat` stacks them (rank: the sum), its delta exactly sum(weight * scaling * B @ A); `svd` mixes the deltas and keeps
the top singular vectors (rank: the largest). The new adapter's alpha equals its rank (scaling 1). On a 4-bit base
only the LoRA matrices are mixed; the quantised weights are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from studio.adapters import AdapterError, AdapterInfo

COMBINATION_TYPES = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SAME_RANK = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")  # peft refuses other ranks
WITH_DENSITY = ("ties", "dare_linear", "dare_ties", "magnitude_prune")  # the share of each delta kept
SEED = 0  # dare_* drop entries at random: seeded, so Chat and Export make the same combination from the same folders


@dataclass(frozen=True)
class Part:
    name: str  # the adapter's name where it is loaded
    path: str  # its folder, from which Export loads it again
    weight: float


@dataclass(frozen=True)
class Combination:
    name: str
    parts: tuple[Part, ...]
    combination_type: str = "linear"
    density: float | None = None
    rank: int = 0  # the combined adapter's, as peft makes it (cat: the sum, svd: the largest)

    def recipe(self) -> dict[str, Any]:
        """What it is made of, as the exported model's studio_combination.json and Chat's list say it."""
        return {
            "name": self.name,
            "combination_type": self.combination_type,
            "density": self.density,
            "adapters": [{"name": p.name, "path": p.path, "weight": p.weight} for p in self.parts],
        }

    def describe(self) -> str:
        """A one-line recipe: "0.5 × a + 0.5 × b (linear)"."""
        terms = " + ".join(f"{p.weight:g} × {p.name}" for p in self.parts)
        density = f", density {self.density:g}" if self.density is not None else ""
        return f"{terms} ({self.combination_type}{density})"


def combination_of(
    name: str,
    adapters: list[AdapterInfo],
    weights: list[float],
    combination_type: str = "linear",
    density: float | None = None,
    taken: set[str] | frozenset[str] = frozenset(),
) -> Combination:
    """A checked recipe; AdapterError saying what to change when peft could not make it (or would make it wrong)."""
    name = name.strip()
    if not name or name in taken or name in {a.name for a in adapters}:
        raise AdapterError("combine.name_taken", name=name)
    from torch.nn import ModuleDict  # here: the page reads COMBINATION_TYPES without loading torch

    if "." in name or hasattr(ModuleDict, name):  # peft keeps adapters in ModuleDicts: "half" would be a method
        raise AdapterError("combine.name_reserved", name=name)
    if len(adapters) < 2 or len(weights) != len(adapters):
        raise AdapterError("combine.needs_two")
    if len({a.name for a in adapters}) != len(adapters):
        raise AdapterError("combine.twice")
    if combination_type not in COMBINATION_TYPES:
        raise AdapterError("combine.unknown_type", type=combination_type, types=", ".join(COMBINATION_TYPES))
    for info in adapters:
        if info.method != "lora":  # OFT and whole models have no A and B to mix
            raise AdapterError("combine.not_lora", name=info.name, method=info.method)
    if not all(math.isfinite(w) for w in weights):
        raise AdapterError("combine.bad_weight")
    ranks = {a.name: a.rank for a in adapters}
    if combination_type in SAME_RANK and len(set(ranks.values())) > 1:
        listed = ", ".join(f"{n}: {r}" for n, r in ranks.items())
        raise AdapterError("combine.ranks_differ", type=combination_type, ranks=listed)
    density = _density(combination_type, density)
    parts = tuple(Part(a.name, a.path, float(w)) for a, w in zip(adapters, weights))
    known = [a.rank or 0 for a in adapters]
    return Combination(name, parts, combination_type, density, sum(known) if combination_type == "cat" else max(known))


def _density(combination_type: str, density: float | None) -> float | None:
    if combination_type not in WITH_DENSITY:
        return None
    if density is None or not 0 < density <= 1:
        raise AdapterError("combine.needs_density", type=combination_type)
    return float(density)


def add_combination(model: Any, combination: Combination) -> None:
    """The combination added to a PeftModel holding its parts (under their names) as one more adapter."""
    import torch

    options: dict[str, Any] = {"density": combination.density} if combination.density is not None else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        try:
            model.add_weighted_adapter(
                adapters=[p.name for p in combination.parts],
                weights=[p.weight for p in combination.parts],
                adapter_name=combination.name,
                combination_type=combination.combination_type,
                **options,
            )
        except (ValueError, TypeError, RuntimeError) as error:  # peft's own refusals (target types, modules_to_save)
            raise AdapterError("combine.failed", name=combination.name, error=error) from None
