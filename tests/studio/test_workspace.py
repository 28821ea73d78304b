"""The served workspace: paths from the browser stay inside it, symlinks included."""

import dataclasses
import json

import pytest

from studio.config import EMBEDDED_MODEL, ConfigError, RunConfig
from studio.errors import PathNotAllowed, StudioError
from studio.paths import BUNDLED_DATA_DIR
from studio.workspace import Workspace


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace.serve(root, "runs")


def test_paths_inside_resolve_and_outside_are_refused(workspace, tmp_path):
    assert workspace.path("configs/a.yaml", "Config file", write=True) == workspace.root / "configs" / "a.yaml"
    for outside in ("/etc/passwd", "../x.yaml", str(tmp_path / "elsewhere"), "~/.ssh/id_rsa", "data/../../x"):
        with pytest.raises(PathNotAllowed, match="outside the served workspace"):
            workspace.path(outside, "Config file")


def test_a_symlink_that_leads_out_is_refused(workspace, tmp_path):
    (tmp_path / "secret").mkdir()
    (workspace.root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(PathNotAllowed):
        workspace.path("link/file.json", "Dataset file")


def test_bundled_data_is_readable_but_not_writable(workspace):
    assert workspace.path(BUNDLED_DATA_DIR / "dataset_info.json", "Dataset file")
    with pytest.raises(PathNotAllowed, match="cannot be written"):
        workspace.path(BUNDLED_DATA_DIR / "x.yaml", "Config file", write=True)


def test_config_files_are_yaml_only(workspace):
    assert workspace.config_file("configs/run.yml", write=True).suffix == ".yml"
    with pytest.raises(PathNotAllowed, match=".yaml or .yml"):
        workspace.config_file("notes.txt", write=True)


def test_every_path_of_a_config_is_checked(workspace):
    workspace.check_config(RunConfig())  # defaults: bundled data, relative outputs, embedded model
    for dotted, value in [
        ("data.dataset_dir", "/etc"),
        ("training.resume_from_checkpoint", "/tmp/planted"),
        ("export.output_dir", "/tmp/out"),
        ("evaluation.output_dir", "../evals"),
        ("training.output_dir", "/tmp/runs"),
        ("model.name_or_path", "/opt/models/x"),
    ]:
        with pytest.raises(PathNotAllowed, match=dotted.split(".")[0]):
            workspace.check_config(RunConfig().with_overrides({dotted: value}))


def test_the_adapter_a_run_continues_must_be_in_the_workspace(workspace, tmp_path):
    for outside in ("/tmp/planted-adapter", "../adapter", str(tmp_path / "elsewhere" / "adapter")):
        with pytest.raises(PathNotAllowed, match="lora.init_adapter"):
            workspace.check_config(RunConfig().with_overrides({"lora.init_adapter": outside}))
    workspace.check_config(RunConfig().with_overrides({"lora.init_adapter": "runs/sft-1/adapter"}))


def test_remote_code_needs_the_servers_permission(workspace):
    config = RunConfig().with_overrides({"model.trust_remote_code": "true"})
    with pytest.raises(PathNotAllowed, match="--allow-remote-code"):
        workspace.check_config(config)
    Workspace(workspace.root, allow_remote_code=True).check_model("embedded:x", trust_remote_code=True)


def test_a_reward_file_runs_code_and_needs_the_servers_permission(workspace):
    config = RunConfig().with_overrides({"training.stage": "grpo", "rewards.file": "my_reward.py"})
    with pytest.raises(PathNotAllowed, match="rewards.file .*--allow-remote-code"):
        workspace.check_config(config)
    allowed = dataclasses.replace(workspace, allow_remote_code=True)
    allowed.check_config(config)
    with pytest.raises(PathNotAllowed, match="rewards.file"):  # permitted code, still only from the workspace
        allowed.check_config(config.with_overrides({"rewards.file": "/tmp/planted_reward.py"}))


def test_a_reward_model_is_a_run_of_the_runs_folder_or_a_folder_inside(workspace):
    runs = workspace.writable[0]
    (runs / "rm-1" / "adapter").mkdir(parents=True)
    workspace.check_config(RunConfig().with_overrides({"ppo.reward_model": "rm-1"}))
    workspace.check_config(RunConfig().with_overrides({"ppo.reward_model": "models/my-rm"}))
    for outside in ("/tmp/planted-rm", "../rm", "..", "runs/../../rm"):
        with pytest.raises(PathNotAllowed, match="ppo.reward_model"):
            workspace.check_config(RunConfig().with_overrides({"ppo.reward_model": outside}))


def test_a_registry_cannot_name_files_outside(workspace, tmp_path):
    (tmp_path / "private.json").write_text(json.dumps([{"instruction": "secret", "output": "secret"}]))
    (tmp_path / "secrets" / "sub").mkdir(parents=True)
    (workspace.root / "owner").mkdir()
    (workspace.root / "owner" / "name").symlink_to(tmp_path / "secrets")  # a hub id that is a local folder
    (workspace.root / "local" / "set").mkdir(parents=True)
    (workspace.root / "local" / "set" / "up").symlink_to(tmp_path / "secrets")
    registry = {
        "leak": {"file_name": str(tmp_path / "private.json")},
        "up": {"file_name": "../../private.json"},
        "script": {"file_name": "ok.json", "script_url": "../../private.json"},
        "cloud": {"file_name": "ok.json", "cloud_file_name": str(tmp_path / "private.json")},
        "linked": {"hf_hub_url": "owner/name"},
        "inner": {"hf_hub_url": "local/set", "folder": "up"},
        "ok": {"file_name": "ok.json"},
        "hub": {"hf_hub_url": "llamafactory/alpaca_gpt4_zh", "folder": "data/zh", "subset": "zh", "split": "train"},
    }
    (workspace.root / "data").mkdir()
    (workspace.root / "data" / "dataset_info.json").write_text(json.dumps(registry))
    (workspace.root / "data" / "ok.json").write_text("[]")
    workspace.check_dataset_files("data", ["ok", "hub"])  # a hub id names no path on this machine
    for name, field in [
        ("leak", "file_name"),
        ("up", "file_name"),
        ("script", "script_url"),
        ("cloud", "cloud_file_name"),
        ("linked", "hf_hub_url"),
        ("inner", "folder"),
    ]:
        with pytest.raises(PathNotAllowed, match=f"dataset '{name}' \\({field} in dataset_info.json\\)"):
            workspace.check_dataset_files("data", [name])


@pytest.mark.parametrize(
    "name",
    [
        "../../../x",
        "embedded:../../../x",
        "embedded:SmolLM2-135M-Instruct/../../x",
        "./x/../../y",
        "/opt/models/x",
        "~/models/x",
        "a/b/../../../c",
    ],
)
def test_a_model_name_that_leads_out_is_refused(workspace, name):
    """One decision says what a model name is; a path (however it is spelled) must stay in the workspace."""
    with pytest.raises((PathNotAllowed, ConfigError)):
        workspace.check_config(RunConfig().with_overrides({"model.name_or_path": name}))


def test_hub_ids_and_the_embedded_model_name_no_path(workspace):
    for name in ("Qwen/Qwen1.5-1.8B-Chat", "gpt2", EMBEDDED_MODEL):
        workspace.check_config(RunConfig().with_overrides({"model.name_or_path": name}))
    (workspace.root / "Qwen").mkdir()
    (workspace.root / "Qwen" / "Qwen1.5-1.8B-Chat").symlink_to("/etc")  # a folder of that name is what loads
    with pytest.raises(PathNotAllowed):
        workspace.check_config(RunConfig().with_overrides({"model.name_or_path": "Qwen/Qwen1.5-1.8B-Chat"}))


def test_config_file_names_are_refused_clearly(workspace):
    for name in ("configs/a\nb.yaml", "configs/a\x00b.yaml", "x" * 300 + ".yaml", "embedded:../x.yaml", "a\\b.yaml"):
        with pytest.raises(StudioError, match="Config file") as refused:
            workspace.config_file(name, write=True)
        assert type(refused.value) in (StudioError, PathNotAllowed)
    assert not any(workspace.root.iterdir())  # nothing was created on the way


def test_a_datasets_pictures_are_read_once_per_version_yet_every_change_is_seen(workspace, tmp_path, monkeypatch):
    """The fit line checks the config at every change of a field: the pictures a dataset names are read from its
    file once per version of it (path, mtime, size); an edit of the file, or a link moved since, is still seen."""
    from PIL import Image

    import studio.data.readers as readers

    reads = []
    read_records = readers.read_records
    monkeypatch.setattr(readers, "read_records", lambda *args: reads.append(args) or read_records(*args))
    (tmp_path / "secret").mkdir()
    data, pictures = workspace.root / "data", workspace.root / "pictures"
    for folder in (tmp_path / "secret", pictures):
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), "red").save(folder / "a.png")
    data.mkdir()
    (data / "pics").symlink_to(pictures)
    entry = {"file_name": "set.json", "formatting": "openai", "columns": {"images": "images"}}
    (data / "dataset_info.json").write_text(json.dumps({"set": entry}))
    turns = [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "!"}]
    (data / "set.json").write_text(json.dumps([{"messages": turns, "images": ["pics/a.png"]}]))
    for _ in range(3):
        workspace.check_dataset_files("data", ["set"])
    assert len(reads) == 1
    (data / "pics").unlink()
    (data / "pics").symlink_to(tmp_path / "secret")  # the same words now lead out
    with pytest.raises(PathNotAllowed, match="picture 'pics/a.png'"):
        workspace.check_dataset_files("data", ["set"])
    assert len(reads) == 1
    outside = str(tmp_path / "secret" / "a.png")
    (data / "set.json").write_text(json.dumps([{"messages": turns, "images": [outside]}]))
    with pytest.raises(PathNotAllowed, match="outside the served workspace"):
        workspace.check_dataset_files("data", ["set"])
    assert len(reads) == 2
