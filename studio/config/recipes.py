"""Starting points per model: the recipe a model is trained with unless the user says otherwise.

The recipes are the example configs themselves (examples/*.yaml), so what the page fills in, what
the README runs and what the tests train are one file each:

    embedded default          -> examples/demo.yaml  (minutes on a CPU; the demo persona)
    Qwen1.5 / Qwen2.5 presets -> examples/qwen1.5-1.8b-chat-qlora.yaml  (the tutorial's recipe)

Only the training-side sections are taken from a recipe; the model, its template and the run's
name stay the user's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.config.model import EMBEDDED_MODEL
from studio.config.run import RunConfig
from studio.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
RECIPE_SECTIONS = ("quantization", "lora", "data", "training")


@dataclass(frozen=True)
class Recipe:
    file: Path
    summary: str  # one line for people: what it trains and about how long
    summary_zh: str

    def config(self) -> RunConfig:
        return RunConfig.from_yaml(self.file)


DEMO = Recipe(
    EXAMPLES / "demo.yaml",
    "the demo recipe for the embedded model (the 小墨 persona; minutes on a 2-core CPU)",
    "内置模型的演示配方（“小墨”人设；2 核 CPU 上几分钟即可训练完）",
)
TUTORIAL = Recipe(
    EXAMPLES / "qwen1.5-1.8b-chat-qlora.yaml",
    "the tutorial recipe (QLoRA NF4, rank 8, lr 1e-4, 3 epochs, accumulation 2)",
    "教程配方（QLoRA NF4、秩 8、学习率 1e-4、3 轮、梯度累积 2）",
)


def recipe_for(model_name: str) -> Recipe | None:
    if model_name == EMBEDDED_MODEL:
        return DEMO
    if model_name.startswith(("Qwen/Qwen1.5-", "Qwen/Qwen2.5-")):
        return TUTORIAL
    return None


def with_recipe(config: RunConfig, recipe: Recipe | None = None) -> RunConfig:
    """`config` with the training-side sections of `recipe` (by default the one for its model)."""
    recipe = recipe or recipe_for(config.model.name_or_path)
    if recipe is None:
        return config
    source = recipe.config()
    return config.model_copy(update={section: getattr(source, section).model_copy() for section in RECIPE_SECTIONS})
