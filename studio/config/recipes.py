"""Starting points per model and stage: the recipe a run is trained with unless the user says otherwise.

The recipes are the example configs themselves (examples/*.yaml), so what the page fills in, what
the README runs and what the tests train are one file each:

    embedded default          -> examples/demo.yaml, dpo-demo.yaml, kto-demo.yaml, pt-demo.yaml
                                 (minutes on a CPU; the demo persona)
    Qwen1.5 / Qwen2.5 presets -> examples/qwen1.5-1.8b-chat-qlora.yaml (the tutorial's recipe) and
                                 qwen1.5-1.8b-chat-{dpo,kto,pt}.yaml (LLaMA-Factory's example values)

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
RECIPE_SECTIONS = ("quantization", "lora", "data", "training", "preference")


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
# (family, stage) -> recipe; a family is the embedded model, or the tutorial's Qwen presets
RECIPES: dict[tuple[str, str], Recipe] = {
    ("embedded", "sft"): DEMO,
    ("embedded", "dpo"): Recipe(
        EXAMPLES / "dpo-demo.yaml",
        "the DPO demo recipe for the embedded model (lr 2e-4 with an SFT term, ftx 1.0, on dpo_zh_demo)",
        "内置模型的 DPO 演示配方（学习率 2e-4，带 SFT 项 ftx 1.0，数据 dpo_zh_demo）",
    ),
    ("embedded", "kto"): Recipe(
        EXAMPLES / "kto-demo.yaml",
        "the KTO demo recipe for the embedded model (lr 2e-4 with an SFT term, ftx 1.0, on kto_zh_demo)",
        "内置模型的 KTO 演示配方（学习率 2e-4，带 SFT 项 ftx 1.0，数据 kto_zh_demo）",
    ),
    ("embedded", "pt"): Recipe(
        EXAMPLES / "pt-demo.yaml",
        "the pretraining demo recipe for the embedded model (lr 5e-4, 1 epoch, on text_zh_demo)",
        "内置模型的继续预训练演示配方（学习率 5e-4，1 轮，数据 text_zh_demo）",
    ),
    ("tutorial", "sft"): TUTORIAL,
    ("tutorial", "dpo"): Recipe(
        EXAMPLES / "qwen1.5-1.8b-chat-dpo.yaml",
        "LLaMA-Factory's LoRA DPO values (QLoRA NF4, lr 5e-6, beta 0.1, accumulation 8, on dpo_zh_demo)",
        "LLaMA-Factory 的 LoRA DPO 取值（QLoRA NF4、学习率 5e-6、beta 0.1、梯度累积 8，数据 dpo_zh_demo）",
    ),
    ("tutorial", "kto"): Recipe(
        EXAMPLES / "qwen1.5-1.8b-chat-kto.yaml",
        "LLaMA-Factory's LoRA KTO values (QLoRA NF4, lr 5e-6, beta 0.1, accumulation 8, on kto_zh_demo)",
        "LLaMA-Factory 的 LoRA KTO 取值（QLoRA NF4、学习率 5e-6、beta 0.1、梯度累积 8，数据 kto_zh_demo）",
    ),
    ("tutorial", "pt"): Recipe(
        EXAMPLES / "qwen1.5-1.8b-chat-pt.yaml",
        "LLaMA-Factory's LoRA pretraining values (QLoRA NF4, lr 1e-4, 3 epochs, accumulation 8, on text_zh_demo)",
        "LLaMA-Factory 的 LoRA 继续预训练取值（QLoRA NF4、学习率 1e-4、3 轮、梯度累积 8，数据 text_zh_demo）",
    ),
}


def recipe_family(model_name: str) -> str | None:
    if model_name == EMBEDDED_MODEL:
        return "embedded"
    if model_name.startswith(("Qwen/Qwen1.5-", "Qwen/Qwen2.5-")):
        return "tutorial"
    return None


def recipe_for(model_name: str, stage: str = "sft", *, any_model: bool = False) -> Recipe | None:
    """The recipe for this model and stage; None for a model of no known family, unless `any_model` asks for
    the tutorial family's (LLaMA-Factory's own example values, which name no model)."""
    family = recipe_family(model_name) or ("tutorial" if any_model else None)
    return RECIPES.get((family, stage)) if family else None


def with_recipe(config: RunConfig, recipe: Recipe | None = None) -> RunConfig:
    """`config` with the training-side sections of `recipe` (by default the one for its model and stage)."""
    recipe = recipe or recipe_for(config.model.name_or_path, config.training.stage)
    if recipe is None:
        return config
    source = recipe.config()
    return config.model_copy(update={section: getattr(source, section).model_copy() for section in RECIPE_SECTIONS})
