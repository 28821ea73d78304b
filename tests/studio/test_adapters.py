"""What runs leave, listed and read: a lora/oft run's adapter, a full/freeze run's whole model (run/model/)."""

import pytest

from studio.adapters import AdapterError, read_adapter, read_peft_adapter, scan_adapters


def test_the_list_holds_full_and_freeze_runs_models_by_run_name_marked_whole(method_runs, tiny_model_dir):
    full, freeze = method_runs("full"), method_runs("freeze")
    listed = {info.name: info for info in scan_adapters(full.path.parent).adapters}
    assert listed["full"].path == str(full.model_dir) and listed["freeze"].path == str(freeze.model_dir)
    assert listed["full"].whole_model and listed["full"].method == "full" and listed["freeze"].method == "freeze"
    assert listed["full"].base_model == str(tiny_model_dir) and listed["full"].rank is None
    assert not listed["full"].reward_model


def test_an_oft_adapter_is_an_adapter_of_its_kind(method_runs):
    info = read_adapter(method_runs("oft").adapter_dir)
    assert info.name == "oft" and info.method == "oft" and not info.whole_model


def test_a_whole_model_is_no_adapter_to_continue(method_runs, tiny_config):
    from studio.control.validation import check_init_adapter

    model_dir = method_runs("full").model_dir
    with pytest.raises(AdapterError, match="holds a whole model"):
        read_peft_adapter(model_dir)
    with pytest.raises(AdapterError, match="lora.init_adapter"):
        check_init_adapter(tiny_config(**{"quantization.method": "none", "lora.init_adapter": str(model_dir)}))


def test_a_model_folder_from_elsewhere_counts_as_a_full_model_of_unknown_base(tiny_model_dir, tmp_path):
    info = read_adapter(tiny_model_dir)
    assert info.whole_model and info.method == "full" and info.base_model is None and info.name == tiny_model_dir.name
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AdapterError, match="no model weights"):
        read_adapter(tmp_path)
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        read_adapter(tmp_path / "nothing")


def test_compare_opens_a_full_runs_model(method_runs):
    from studio.runs.compare import compare_runs

    full = method_runs("full")
    [row] = compare_runs(full.path.parent, ["full"]).rows
    assert row.adapter == str(full.model_dir)
