"""Recipes of weighted LoRA combinations: what peft could not make (or would make wrong) is refused."""

import math

import pytest

from studio.adapters import AdapterError, AdapterInfo
from studio.combinations import combination_of


def _info(name: str, rank: int = 4, method: str = "lora") -> AdapterInfo:
    return AdapterInfo(name, f"/adapters/{name}", None, rank, method=method)


@pytest.mark.parametrize(
    ("adapters", "weights", "kind", "density", "says"),
    [
        ([_info("a")], [1.0], "linear", None, "two or more"),
        ([_info("a"), _info("b")], [1.0], "linear", None, "two or more"),
        ([_info("a"), _info("a")], [1.0, 1.0], "linear", None, "twice"),
        ([_info("a"), _info("b", method="oft")], [1.0, 1.0], "linear", None, "'b' is a oft result"),
        ([_info("a"), _info("b", method="full")], [1.0, 1.0], "cat", None, "only LoRA adapters"),
        ([_info("a"), _info("b", rank=8)], [1.0, 1.0], "linear", None, "choose cat or svd"),
        ([_info("a"), _info("b")], [1.0, 1.0], "blend", None, "Unknown combination type 'blend'"),
        ([_info("a"), _info("b")], [1.0, math.nan], "linear", None, "finite number"),
        ([_info("a"), _info("b")], [1.0, 1.0], "ties", None, "give a density"),
        ([_info("a"), _info("b")], [1.0, 1.0], "dare_linear", 1.5, "give a density"),
    ],
)
def test_recipes_peft_cannot_make_are_refused_saying_what_to_do(adapters, weights, kind, density, says):
    with pytest.raises(AdapterError, match=says):
        combination_of("mix", adapters, weights, kind, density)


def test_a_taken_name_is_refused_and_ranks_may_differ_for_cat_and_svd():
    with pytest.raises(AdapterError, match="new name"):
        combination_of("a", [_info("a"), _info("b")], [1, 1])
    with pytest.raises(AdapterError, match="new name"):
        combination_of("loaded", [_info("a"), _info("b")], [1, 1], taken={"loaded"})
    for reserved in ("half", "a.b"):
        with pytest.raises(AdapterError, match="another name"):
            combination_of(reserved, [_info("a"), _info("b")], [1, 1])
    assert combination_of("m", [_info("a"), _info("b", rank=8)], [1, 1], "cat").rank == 12
    assert combination_of("m", [_info("a"), _info("b", rank=8)], [1, 1], "svd").rank == 8
    mix = combination_of("m", [_info("a"), _info("b")], [0.5, 0.5], "ties", 0.5)
    assert mix.describe() == "0.5 × a + 0.5 × b (ties, density 0.5)"
    assert mix.recipe()["adapters"][1] == {"name": "b", "path": "/adapters/b", "weight": 0.5}
