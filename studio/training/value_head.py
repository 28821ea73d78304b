"""A scalar head on the decoder's last hidden state: the reward model's score (stage rm) and PPO's value function.

It is trained in full beside the LoRA adapter and saved next to it as `value_head.safetensors` with the keys
LLaMA-Factory gives its `v_head` (`v_head.summary.weight`, `v_head.summary.bias`), so either tool reads the
other's reward model. Zero-initialised, it scores every text 0: a fresh reward model's pairwise loss is ln 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from studio.runs.reward_models import HEAD_FILE

PREFIX = "v_head."
ATTRIBUTE = "v_head"


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (...) scores, in the head's own (fp32) precision."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def attach_value_head(model: torch.nn.Module, device: str | torch.device | None = None) -> ValueHead:
    """A zero head registered on `model` (so the optimizer and the strategies see its parameters)."""
    config: Any = model.config
    hidden = int(getattr(config, "text_config", config).hidden_size)
    head = ValueHead(hidden).to(device or next(model.parameters()).device)
    setattr(model, ATTRIBUTE, head)
    return head


def head_of(model: torch.nn.Module) -> ValueHead | None:
    head = getattr(model, ATTRIBUTE, None)
    return head if isinstance(head, ValueHead) else None


def head_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The head's weights under LLaMA-Factory's keys; empty for a model without one."""
    head = head_of(model)
    if head is None:
        return {}
    return {
        PREFIX + name: value.detach().to("cpu", copy=True).contiguous() for name, value in head.state_dict().items()
    }


def split_head(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(adapter weights, head weights) of a saved set of trainable weights."""
    adapter = {k: v for k, v in weights.items() if not k.startswith(PREFIX)}
    return adapter, {k: v for k, v in weights.items() if k.startswith(PREFIX)}


def head_from(weights: dict[str, torch.Tensor]) -> ValueHead:
    """A head holding saved weights (read_head's), sized by them: for scoring, frozen and in eval mode."""
    head = ValueHead(int(weights[PREFIX + "summary.weight"].shape[1]))
    head.load_state_dict({key.removeprefix(PREFIX): value for key, value in weights.items()})
    head.requires_grad_(False)
    return head.eval()


def load_head_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    head = head_of(model)
    if head is None or not weights:
        return
    head.load_state_dict({k.removeprefix(PREFIX): v for k, v in weights.items()})


def save_head(model: torch.nn.Module, folder: Path) -> None:
    from safetensors.torch import save_file

    weights = head_state(model)
    if weights:
        save_file(weights, folder / HEAD_FILE, metadata={"format": "pt"})


def read_head(folder: str | Path) -> dict[str, torch.Tensor] | None:
    """The head saved in an adapter folder, or None when it has none (not a reward model)."""
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    return load_file(path) if path.is_file() else None
