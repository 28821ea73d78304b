"""Starting points per model and stage: the recipe a run is trained with unless the user says otherwise.

The recipes are the example configs themselves (examples/*.yaml), so what the page fills in, what
the README runs and what the tests train are one file each:

    embedded default          -> examples/demo.yaml, {dpo,kto,pt,rm,ppo,grpo}-demo.yaml
                                 (minutes on a CPU; the demo persona, arithmetic for grpo)
    Qwen1.5 / Qwen2.5 presets -> examples/qwen1.5-1.8b-chat-qlora.yaml (the tutorial's recipe) and
                                 qwen1.5-1.8b-chat-{dpo,kto,pt,rm,ppo,grpo}.yaml (LLaMA-Factory's example
                                 values; TRL's GRPO defaults)

Only the training-side sections are taken from a recipe; the model, its template and the run's
name stay the user's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.config.model import EMBEDDED_MODEL, MODEL_PRESETS
from studio.config.run import RunConfig
from studio.locales import Message, say
from studio.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
RECIPE_SECTIONS = ("quantization", "lora", "data", "training", "preference", "ppo", "grpo", "rewards", "generation")


@dataclass(frozen=True)
class Recipe:
    file: Path
    summary: Message  # one line for people: what it trains and about how long

    def config(self) -> RunConfig:
        return RunConfig.from_yaml(self.file)


DEMO = Recipe(EXAMPLES / "demo.yaml", say("config.recipe_embedded_sft_summary"))
TUTORIAL = Recipe(EXAMPLES / "qwen1.5-1.8b-chat-qlora.yaml", say("config.recipe_tutorial_sft_summary"))
# (family, stage) -> recipe; a family is the embedded model, or the tutorial's Qwen presets
RECIPES: dict[tuple[str, str], Recipe] = {
    ("embedded", "sft"): DEMO,
    ("embedded", "dpo"): Recipe(EXAMPLES / "dpo-demo.yaml", say("config.recipe_embedded_dpo_summary")),
    ("embedded", "kto"): Recipe(EXAMPLES / "kto-demo.yaml", say("config.recipe_embedded_kto_summary")),
    ("embedded", "pt"): Recipe(EXAMPLES / "pt-demo.yaml", say("config.recipe_embedded_pt_summary")),
    ("embedded", "rm"): Recipe(EXAMPLES / "rm-demo.yaml", say("config.recipe_embedded_rm_summary")),
    ("embedded", "ppo"): Recipe(EXAMPLES / "ppo-demo.yaml", say("config.recipe_embedded_ppo_summary")),
    ("embedded", "grpo"): Recipe(EXAMPLES / "grpo-demo.yaml", say("config.recipe_embedded_grpo_summary")),
    ("tutorial", "sft"): TUTORIAL,
    ("tutorial", "dpo"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-dpo.yaml", say("config.recipe_tutorial_dpo_summary")),
    ("tutorial", "kto"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-kto.yaml", say("config.recipe_tutorial_kto_summary")),
    ("tutorial", "pt"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-pt.yaml", say("config.recipe_tutorial_pt_summary")),
    ("tutorial", "rm"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-rm.yaml", say("config.recipe_tutorial_rm_summary")),
    ("tutorial", "ppo"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-ppo.yaml", say("config.recipe_tutorial_ppo_summary")),
    ("tutorial", "grpo"): Recipe(EXAMPLES / "qwen1.5-1.8b-chat-grpo.yaml", say("config.recipe_tutorial_grpo_summary")),
}


def recipe_family(model_name: str) -> str | None:
    """'embedded', or 'tutorial' for every other preset (QLoRA rank 8 on all linear layers suits each of them)."""
    if model_name == EMBEDDED_MODEL:
        return "embedded"
    if model_name in MODEL_PRESETS:
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
