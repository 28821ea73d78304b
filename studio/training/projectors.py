"""GaLore's and APOLLO's projectors in a checkpoint: their matrices and numbers, never the objects.

Both optimizers keep a projector object in each projected weight's state (`state["projector"]`): the projection
matrix of the last recomputation (two for GaLore's `full` type), the seed of APOLLO's next random matrix, and
the options it was made with. A checkpoint holds only tensors and JSON (checkpoint.py), so `state_dict` gives the
projector as a dict of those values, and `load_state_dict` makes the object again from them.

Making a new projector on resume instead would not continue the run: it would compute a new projection from the
first gradient after the resume, where the run that did not stop keeps the old one until the next
`update_proj_gap` step (and APOLLO's next random matrix depends on the seed it has reached).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import chain
from typing import Any

import torch

PROJECTOR = "projector"
# the projector class for a parameter group (its options: rank, proj, ...)
ProjectorClass = Callable[[dict], type]


def keep_projectors_plain(optimizer: torch.optim.Optimizer, projector_class: ProjectorClass) -> None:
    """Hooks of `optimizer`'s state_dict and load_state_dict that turn projectors into plain values and back."""
    optimizer.register_state_dict_post_hook(_plain_projectors)
    optimizer.register_load_state_dict_pre_hook(partial(_made_projectors, projector_class=projector_class))


def _plain_projectors(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    # state_dict() hands out the optimizer's own per-weight dicts: changed copies, never the live ones
    state = {}
    for index, values in saved["state"].items():
        projector = values.get(PROJECTOR)
        state[index] = values if projector is None else {**values, PROJECTOR: _values_of(projector)}
    return {**saved, "state": state}


def _values_of(projector: object) -> dict[str, Any]:
    """Every attribute: tensors, numbers, text; a list of tensors (GaLore's full projection) as NAME.0, NAME.1."""
    values: dict[str, Any] = {}
    for name, value in vars(projector).items():
        if isinstance(value, (list, tuple)):
            values |= {f"{name}.{i}": item for i, item in enumerate(value)}
        else:
            values[name] = value
    return values


def _made_projectors(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], projector_class: ProjectorClass
) -> dict[str, Any]:
    saved_ids = chain.from_iterable(group["params"] for group in saved["param_groups"])
    here = [(p, group) for group in optimizer.param_groups for p in group["params"]]
    by_id = dict(zip(saved_ids, here))
    state = {}
    for index, values in saved["state"].items():
        plain = values.get(PROJECTOR)
        if isinstance(plain, dict) and index in by_id:
            parameter, group = by_id[index]
            values = {**values, PROJECTOR: _projector(projector_class(group), plain, parameter.device)}
        state[index] = values
    return {**saved, "state": state}


def _projector(cls: type, plain: dict[str, Any], device: torch.device) -> object:
    """The object with the saved attributes, its constructor not run (its options are among them)."""
    attributes: dict[str, Any] = {}
    listed: dict[str, dict[int, Any]] = {}
    for name, value in plain.items():
        value = value.to(device) if isinstance(value, torch.Tensor) else value
        base, _, position = name.rpartition(".")
        if base and position.isdigit():
            listed.setdefault(base, {})[int(position)] = value
        else:
            attributes[name] = value
    attributes |= {name: [items[i] for i in sorted(items)] for name, items in listed.items()}
    projector: Any = object.__new__(cls)
    projector.__dict__.update(attributes)
    return projector
