"""The served workspace: which paths the browser (or a script calling the web API) may name.

Every Gradio event handler is an HTTP endpoint, so whatever a form field can hold, any client
can send. The web server therefore serves one folder: each path that arrives from the page is
resolved (symlinks followed) and must lie inside it, or inside the places the studio manages
itself (its runs folder, read-only: the bundled demo data and the converted-model cache).
The CLI, run by the machine's own user, has no workspace and accepts any path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.config import RunConfig
from studio.errors import PathNotAllowed, StudioError
from studio.paths import BUNDLED_DATA_DIR, cache_dir, resolve_dataset_dir

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Workspace:
    root: Path
    writable: tuple[Path, ...] = ()  # besides the root, e.g. a runs folder given on the command line
    readable: tuple[Path, ...] = ()  # read-only: bundled data, the model cache, folders the server was told to share
    allow_remote_code: bool = False

    @classmethod
    def serve(
        cls,
        root: str | Path,
        runs_dir: str | Path,
        read_only: tuple[str | Path, ...] = (),
        allow_remote_code: bool = False,
    ) -> Workspace:
        root = Path(root).expanduser().resolve()
        readable = (
            BUNDLED_DATA_DIR.resolve(),
            cache_dir().resolve(),
            *(Path(p).expanduser().resolve() for p in read_only),
        )
        return cls(root, (_absolute(runs_dir, root).resolve(),), readable, allow_remote_code)

    def path(self, raw: str | Path, what: str, *, write: bool = False) -> Path:
        """`raw` resolved against the workspace; PathNotAllowed when it leads anywhere else."""
        resolved = _absolute(raw, self.root).resolve()
        roots = (self.root, *self.writable) + (() if write else self.readable)
        if any(resolved.is_relative_to(root) for root in roots):
            return resolved
        access = "written" if write else "read"
        raise PathNotAllowed(
            f"{what}: {raw} is outside the served workspace {self.root}, so it cannot be {access} from the browser. "
            "Use a path inside the workspace, or start the server with --workspace (or --read-only-dir) covering it.",
            f"{what}：{raw} 不在当前工作区 {self.root} 内，无法从浏览器{'写入' if write else '读取'}。"
            "请使用工作区内的路径，或以 --workspace（或 --read-only-dir）启动服务。",
        )

    def config_file(self, raw: str, *, write: bool) -> Path:
        if not raw or not raw.strip():
            raise StudioError(
                "Give a config file path, e.g. configs/my_run.yaml", "请填写配置文件路径，例如 configs/my_run.yaml"
            )
        path = self.path(raw.strip(), "Config file", write=write)
        if path.suffix not in CONFIG_SUFFIXES:
            raise PathNotAllowed(
                f"Config file {raw}: only .yaml or .yml files are read or written from the browser.",
                f"配置文件 {raw}：浏览器只能读写 .yaml 或 .yml 文件。",
            )
        return path

    def check_config(self, config: RunConfig) -> None:
        """Every path a run config names, and the code it may run."""
        self.path(resolve_dataset_dir(config.data.dataset_dir, self.root), "data.dataset_dir")
        self.check_model(config.model.name_or_path, config.model.trust_remote_code)
        if config.training.resume_from_checkpoint:
            self.path(config.training.resume_from_checkpoint, "training.resume_from_checkpoint")
        if config.lora.init_adapter:
            self.path(config.lora.init_adapter, "lora.init_adapter")
        for what, raw in (
            ("training.output_dir", config.training.output_dir),
            ("evaluation.output_dir", config.evaluation.output_dir),
            ("export.output_dir", config.export.output_dir),
        ):
            self.path(raw, what, write=True)
        self.check_dataset_files(config.data.dataset_dir, [*config.data.datasets, *config.evaluation.datasets])

    def check_model(self, name_or_path: str, trust_remote_code: bool = False) -> None:
        from studio.modeling.loader import is_local_model

        if trust_remote_code and not self.allow_remote_code:
            raise PathNotAllowed(
                "model.trust_remote_code runs Python code shipped with the model; the browser may only ask for it when "
                "the server was started with --allow-remote-code.",
                "model.trust_remote_code 会执行模型自带的 Python 代码；只有以 --allow-remote-code 启动的服务才允许从浏"
                "览器开启。",
            )
        if name_or_path.startswith("embedded:"):
            return
        local = (self.root / Path(name_or_path).expanduser()).exists() or is_local_model(name_or_path)
        if local:  # a hub id is fetched into the hub cache by name and never names a path
            self.path(name_or_path, "model.name_or_path")

    def check_dataset_files(self, dataset_dir: str, names: list[str]) -> None:
        """The files the registry names for these datasets (a registry may name any path)."""
        from studio.data.registry import load_registry
        from studio.modeling.loader import is_local_model

        folder = self.path(resolve_dataset_dir(dataset_dir, self.root), "data.dataset_dir")
        registry = load_registry(folder)
        for name in names:
            spec = registry.specs.get(name)  # a broken entry is reported by the data checks
            hub = spec and (spec.hf_hub_url or spec.ms_hub_url)
            if hub and is_local_model(hub):  # the datasets library reads a local path given as a hub id
                self.path(hub, f"dataset '{name}' (hf_hub_url in dataset_info.json)")
            if spec is None or not spec.file_name:
                continue  # unknown names are refused by the data checks; hub datasets name no path
            path = self.path(folder / spec.file_name, f"dataset '{name}' (file_name in dataset_info.json)")
            if path.is_dir():
                for member in path.iterdir():
                    self.path(member, f"dataset '{name}' (a file in its folder)")


def _absolute(raw: str | Path, root: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else root / path
