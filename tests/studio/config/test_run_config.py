import pytest

from studio.config import ConfigError, RunConfig


def test_defaults_are_the_tutorial_recipe():
    config = RunConfig()
    assert (config.lora.rank, config.lora.alpha, config.lora.target_modules) == (8, 16, ["all"])
    assert config.training.learning_rate == 1e-4
    assert config.training.gradient_accumulation_steps == 2
    assert config.training.num_epochs == 3
    assert config.quantization.method == "auto" and config.quantization.quant_type == "nf4"
    assert 0.1 <= config.data.val_size <= 0.2
    assert config.training.early_stopping_patience


def test_yaml_round_trip(tmp_path):
    config = RunConfig().with_overrides({"lora.rank": "16", "data.datasets": "[a, b]", "data.system_prompt": "你好"})
    path = config.save(tmp_path / "c.yaml")
    assert path.read_text(encoding="utf-8").startswith("# Run with: qlora-studio train")
    assert RunConfig.from_yaml(path) == config


def test_command_renders_only_changes_and_round_trips():
    from studio.cli import _build_parser, _load_config

    config = RunConfig().with_overrides(
        {
            "lora.rank": "16",
            "training.learning_rate": "2e-4",
            "data.datasets": "[alpaca_zh_demo]",
            "quantization.method": "none",
        }
    )
    command = config.to_command()
    assert command.startswith("qlora-studio train --")
    assert "--lora.rank 16" in command and "--training.batch_size" not in command
    import shlex

    args = _build_parser().parse_args(shlex.split(command)[1:])
    assert _load_config(args) == config


def test_bad_fields_name_the_field_line_and_allowed_values():
    text = "lora:\n  rank: 0\nquantization:\n  method: 16bit\ntraining:\n  lr: 3\n"
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_yaml_text(text, source="bad.yaml")
    message = str(caught.value)
    assert "bad.yaml" in message
    assert "lora.rank (line 2)" in message and "greater than or equal to 1" in message
    assert "quantization.method (line 4)" in message and "'auto', '4bit', '8bit' or 'none'" in message
    assert "training.lr (line 6): unknown field" in message


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml_text("lora: [unclosed")
    with pytest.raises(ConfigError, match="no such file"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")


def test_override_of_unknown_section_is_refused():
    with pytest.raises(ConfigError, match="unknown section"):
        RunConfig().with_overrides({"nope.rank": "3"})


def test_every_field_has_help_and_a_chinese_label_and_help_in_the_table():
    from studio.config.base import Section
    from studio.locales import template

    for section_name, section_field in RunConfig.model_fields.items():
        section = section_field.annotation
        fields = (
            {f"{section_name}.{name}": info for name, info in section.model_fields.items()}
            if isinstance(section, type) and issubclass(section, Section)
            else {section_name: section_field}
        )
        for path, info in fields.items():
            assert info.description, path
            assert template(path, "zh") != path and template(f"{path}.help", "zh"), path


def test_a_refused_config_is_said_in_each_language_from_one_error():
    text = "lora:\n  rank: 0\ntraining:\n  lr: 3\n  devices: gpu\n"
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_yaml_text(text, source="bad.yaml")
    chinese = caught.value.text("zh")
    assert chinese.startswith("配置无效（bad.yaml）：\n  - ")
    assert "lora.rank（第 2 行）: Input should be greater than or equal to 1（输入为 0）" in chinese  # pydantic's own
    assert "training.lr（第 4 行）: 未知字段" in chinese
    assert "training.devices（第 5 行）: 请填写 auto、cpu" in chinese  # a validator's, said by key
    assert caught.value.text("en") == str(caught.value)
    with pytest.raises(ConfigError) as caught:
        RunConfig().with_overrides({"nope.rank": "3"})
    assert caught.value.text("zh") == "配置无效（命令行参数）：\n  - nope.rank: 未知的配置节 'nope'"


def test_every_recipe_summary_is_said_in_both_languages():
    from studio.config.recipes import RECIPES
    from studio.locales import in_language

    for recipe in RECIPES.values():
        assert recipe.summary and in_language(recipe.summary, "zh") != str(recipe.summary), recipe


def test_gradient_checkpointing_auto_is_on_for_cuda_only_and_booleans_still_work():
    training = RunConfig().training
    assert training.gradient_checkpointing == "auto"
    assert training.use_gradient_checkpointing("cuda") and not training.use_gradient_checkpointing("cpu")
    assert (
        RunConfig.from_yaml_text("training:\n  gradient_checkpointing: true\n").training.gradient_checkpointing == "on"
    )


def test_stage_preference_and_init_adapter_round_trip_through_yaml_and_the_command(tmp_path):
    import shlex

    from studio.cli import _build_parser, _load_config

    config = RunConfig().with_overrides(
        {
            "training.stage": "dpo",
            "training.best_metric": "reward_accuracy",
            "preference.beta": "0.2",
            "preference.loss": "ipo",
            "preference.reference": "base",
            "lora.init_adapter": "runs/sft-1/adapter",
        }
    )
    assert RunConfig.from_yaml(config.save(tmp_path / "dpo.yaml")) == config
    command = config.to_command()
    assert "--training.stage dpo" in command and "--preference.loss ipo" in command
    assert _load_config(_build_parser().parse_args(shlex.split(command)[1:])) == config
    assert (
        RunConfig().training.stage == "sft"
        and RunConfig().preference.beta == 0.1
        and RunConfig().lora.init_adapter is None
    )


def test_stage_choices_and_preference_only_metrics_are_refused_with_the_field():
    with pytest.raises(ConfigError, match="training.stage"):
        RunConfig().with_overrides({"training.stage": "rlhf"})
    with pytest.raises(ConfigError, match="best_metric reward_margin is measured in the dpo, kto and rm stages only"):
        RunConfig().with_overrides({"training.stage": "pt", "training.best_metric": "reward_margin"})
    with pytest.raises(ConfigError, match="preference.label_smoothing"):
        RunConfig().with_overrides({"preference.label_smoothing": "0.5"})
    assert RunConfig().with_overrides({"lora.init_adapter": "  "}).lora.init_adapter is None


def test_reference_free_losses_and_label_smoothing_only_with_the_sigmoid_loss():
    simpo = RunConfig().with_overrides({"training.stage": "dpo", "preference.loss": "simpo", "preference.beta": "2"})
    assert simpo.preference.simpo_gamma == 0.5 and simpo.preference.reference_free
    assert "--preference.loss simpo" in simpo.to_command()
    assert RunConfig().with_overrides({"preference.loss": "orpo"}).preference.reference_free
    assert not RunConfig().with_overrides({"preference.loss": "ipo"}).preference.reference_free
    assert RunConfig().with_overrides({"preference.label_smoothing": "0.1"}).preference.label_smoothing == 0.1
    for loss in ("hinge", "ipo", "orpo", "simpo"):  # cDPO's smoothing would be ignored silently
        with pytest.raises(ConfigError, match=f"label_smoothing applies to the sigmoid loss only.*loss {loss}"):
            RunConfig().with_overrides({"preference.loss": loss, "preference.label_smoothing": "0.1"})
    with pytest.raises(ConfigError, match="preference.simpo_gamma"):
        RunConfig().with_overrides({"preference.simpo_gamma": "-1"})


def test_an_auto_named_run_is_called_after_its_stage_and_data():
    assert RunConfig().run_name == "sft-alpaca_zh_demo-and-1"  # the defaults: two datasets
    dpo = RunConfig().with_overrides({"training.stage": "dpo", "data.datasets": "[dpo_zh_demo]"})
    assert dpo.run_name == "dpo-dpo_zh_demo" and dpo.to_command() == (
        "qlora-studio train --data.datasets '[dpo_zh_demo]' --training.stage dpo"
    )
    assert RunConfig().with_overrides({"data.datasets": "[问答数据]"}).run_name == "sft-data"  # a folder name of ASCII
    assert RunConfig().with_overrides({"name": "mine"}).run_name == "mine"
