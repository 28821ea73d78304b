"""What a name in a config means: the embedded model, a Hugging Face hub id, or a path on this machine.

One decision for every caller (the workspace check, the loaders, the memory estimate, the data
readers), so that no caller can read a name one way while another checks it the other way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from studio.config.base import FieldProblem

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODEL = f"{EMBEDDED_PREFIX}SmolLM2-135M-Instruct"

# The hub's own rule for repository ids: `name` or `owner/name`, each part of letters, digits, '-', '_' and '.',
# not starting or ending with '-' or '.', at most 96 characters, never '--' or '..'.
_HUB_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ModelSource:
    """kind 'embedded': the bundled default; 'hub': fetched by id into the hub cache (never a path);
    'path': a folder on this machine, `path` resolved against the base folder (it may not exist)."""

    kind: Literal["embedded", "hub", "path"]
    name: str
    path: Path | None = None


def is_hub_id(text: str, *, owner_required: bool = False) -> bool:
    if not _HUB_ID.match(text) or "--" in text or ".." in text:
        return False
    return "/" in text or not owner_required


def check_model_name(name: str) -> str:
    """The spelling alone (no disk access), for config validation: a wrong embedded name or control characters."""
    if _CONTROL.search(name):
        raise FieldProblem("config.model_name_control_characters")
    if name.startswith(EMBEDDED_PREFIX) and name != EMBEDDED_MODEL:
        raise FieldProblem("config.only_one_embedded_model", model=EMBEDDED_MODEL)
    return name


def model_source(name: str, base: Path | None = None) -> ModelSource:
    """How `name` is loaded. An existing folder wins over a hub id of the same spelling (as transformers does);
    anything that is neither a hub id nor the embedded name is a path, relative to `base` (default: here)."""
    if name == EMBEDDED_MODEL:
        return ModelSource("embedded", name)
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists() and is_hub_id(name):
        return ModelSource("hub", name)
    return ModelSource("path", name, path)
