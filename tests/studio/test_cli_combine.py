"""`qlora-studio export --combine FOLDER=WEIGHT ...`: a weighted combination merged, refusals on one line."""

import json

from tests.studio.test_cli import _cli


def test_export_merges_a_combination_and_refuses_a_bad_recipe(tmp_path, tiny_model_dir, strong_adapter, second_adapter):
    model = ["export", "--model.name_or_path", str(tiny_model_dir), "--export.check_prompts", "1"]
    out = tmp_path / "mix"
    made = _cli(*model, "--out", str(out), "--combine", f"{strong_adapter}=0.5", "--combine", f"{second_adapter}=0.5")
    assert made.returncode == 0, made.stderr
    assert json.loads((out / "studio_combination.json").read_text())["combination_type"] == "linear"
    unread = _cli(*model, "--combine", f"{strong_adapter}=half", "--combine", f"{second_adapter}=1")
    assert unread.returncode == 2 and "are not numbers" in unread.stderr and "Traceback" not in unread.stderr
    untyped = _cli(
        *model, "--combine", f"{strong_adapter}=1", "--combine", f"{second_adapter}=1", "--combination-type", "ties"
    )
    assert untyped.returncode == 2 and "give a density" in untyped.stderr
