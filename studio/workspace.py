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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from studio.config import RunConfig
from studio.config.names import model_source
from studio.errors import PathNotAllowed, StudioError
from studio.locales import say
from studio.paths import BUNDLED_DATA_DIR, cache_dir, resolve_dataset_dir

if TYPE_CHECKING:
    from studio.data.registry import DatasetSpec

CONFIG_SUFFIXES = (".yaml", ".yml")
_UNSAFE_CHARACTERS = set(':\\*?"<>|')  # besides control characters: what other systems cannot name, and "embedded:"
MAX_PATH_CHARS, MAX_NAME_BYTES = 1024, 255


@dataclass(frozen=True)
class Workspace:
    root: Path
    writable: tuple[Path, ...] = ()  # besides the root, e.g. a runs folder given on the command line
    readable: tuple[Path, ...] = ()  # read-only: bundled data, the model cache, folders the server was told to share
    allow_remote_code: bool = False
    endpoints: tuple[str, ...] = ()  # URLs (and what lies under them) a judge from the page may call

    @classmethod
    def serve(
        cls,
        root: str | Path,
        runs_dir: str | Path,
        read_only: tuple[str | Path, ...] = (),
        allow_remote_code: bool = False,
        endpoints: tuple[str, ...] = (),
    ) -> Workspace:
        root = Path(root).expanduser().resolve()
        readable = (
            BUNDLED_DATA_DIR.resolve(),
            cache_dir().resolve(),
            *(Path(p).expanduser().resolve() for p in read_only),
        )
        return cls(root, (_absolute(runs_dir, root).resolve(),), readable, allow_remote_code, endpoints)

    def path(self, raw: str | Path, what: str, *, write: bool = False) -> Path:
        """`raw` resolved against the workspace; PathNotAllowed when it leads anywhere else."""
        resolved = _absolute(raw, self.root).resolve()
        roots = (self.root, *self.writable) + (() if write else self.readable)
        if any(resolved.is_relative_to(root) for root in roots):
            return resolved
        key = "workspace.outside_write" if write else "workspace.outside_read"
        raise PathNotAllowed(key, what=what, raw=raw, root=self.root)

    def config_file(self, raw: str, *, write: bool) -> Path:
        if not raw or not raw.strip():
            raise StudioError("workspace.config_path_missing")
        _check_config_name(raw.strip())
        path = self.path(raw.strip(), say("workspace.config_file"), write=write)
        if path.suffix not in CONFIG_SUFFIXES:
            raise PathNotAllowed("workspace.config_not_yaml", raw=raw)
        return path

    def check_config(self, config: RunConfig) -> None:
        """Every path a run config names, and the code it may run."""
        self.path(resolve_dataset_dir(config.data.dataset_dir, self.root), "data.dataset_dir")
        self.check_model(config.model.name_or_path, config.model.trust_remote_code)
        if config.training.resume_from_checkpoint:
            self.path(config.training.resume_from_checkpoint, "training.resume_from_checkpoint")
        if config.lora.init_adapter:
            self.path(config.lora.init_adapter, "lora.init_adapter")
        if config.rewards.file:
            if not self.allow_remote_code:
                raise PathNotAllowed("workspace.reward_file_not_allowed", file=config.rewards.file)
            self.path(config.rewards.file, "rewards.file")
        if config.evaluation.judge == "model":
            self.check_model(config.evaluation.judge_model)
        if config.evaluation.judge == "endpoint":
            self.check_endpoint(config.evaluation.judge_url)
        if config.evaluation.metric_file:
            if not self.allow_remote_code:
                raise PathNotAllowed("workspace.metric_file_not_allowed", file=config.evaluation.metric_file)
            self.path(config.evaluation.metric_file, "evaluation.metric_file")
        if config.ppo.reward_model:
            self._reward_model(config.ppo.reward_model)
        if config.logging.mlflow_tracking_uri:
            self._mlflow_store(config.logging.mlflow_tracking_uri)
        for what, raw in (
            ("training.output_dir", config.training.output_dir),
            ("evaluation.output_dir", config.evaluation.output_dir),
            ("export.output_dir", config.export.output_dir),
        ):
            self.path(raw, what, write=True)
        self.check_dataset_files(config.data.dataset_dir, [*config.data.datasets, *config.evaluation.datasets])

    def _reward_model(self, raw: str) -> None:
        """A run's name in a runs folder the server writes to, or an adapter folder inside the workspace."""
        is_name = all(c.isalnum() or c in "._-" for c in raw) and raw not in (".", "..")
        if is_name and any((runs / raw).is_dir() for runs in self.writable):
            return
        self.path(raw, "ppo.reward_model")

    def _mlflow_store(self, uri: str) -> None:
        """A local MLflow store inside the workspace. A server from the page would make this server send the run
        wherever the page says; the server's own MLFLOW_TRACKING_URI (the field left empty) names one instead."""
        parts = urlsplit(uri)
        if parts.scheme in ("", "file"):
            self.path(parts.path if parts.scheme else uri, "logging.mlflow_tracking_uri", write=True)
        elif parts.scheme == "sqlite":
            self.path(uri.removeprefix("sqlite:///"), "logging.mlflow_tracking_uri", write=True)
        else:
            raise PathNotAllowed("tracking.server_not_allowed", uri=uri)

    def check_endpoint(self, url: str) -> None:
        """A URL the server was started to allow (--judge-endpoint), or one under it: from the page, any other
        would make the server a client of whatever address the page names (its own loopback services included)."""
        if not any(_under(url, allowed) for allowed in self.endpoints):
            raise PathNotAllowed("workspace.endpoint_not_allowed", url=url)

    def check_model(self, name_or_path: str, trust_remote_code: bool = False) -> None:
        if trust_remote_code and not self.allow_remote_code:
            raise PathNotAllowed("workspace.remote_code_not_allowed")
        source = model_source(name_or_path, self.root)
        if source.path is not None:  # a hub id is fetched into the hub cache by name and never names a path
            self.path(source.path, "model.name_or_path")

    def check_dataset_files(self, dataset_dir: str, names: list[str]) -> None:
        """Every place the registry entries of these datasets name (a registry may name any path)."""
        from studio.data.registry import load_registry

        folder = self.path(resolve_dataset_dir(dataset_dir, self.root), "data.dataset_dir")
        registry = load_registry(folder)
        for name in names:
            spec = registry.specs.get(name)  # unknown names and broken entries are refused by the data checks
            hub = None
            for key, value, kind in spec.places() if spec else ():
                what = say("workspace.dataset_place", name=name, key=key)
                if kind == "file":
                    self._dataset_file(folder / value, what)
                elif kind == "hub" and (source := model_source(value, self.root)).path is not None:
                    hub = self.path(source.path, what)  # the datasets library reads an existing folder of that name
                elif kind == "inner" and hub is not None:
                    self.path(hub / value, what)
            if spec is not None:
                self._dataset_pictures(folder, spec)

    def _dataset_pictures(self, folder: Path, spec: DatasetSpec) -> None:
        """Every picture a dataset of pictures names ('../../etc/passwd' and '/home/x/private.png' alike)."""
        from studio.data.pictures import dataset_pictures

        for where, raw, path in dataset_pictures(folder, spec):
            self.path(path, say("workspace.dataset_picture", name=spec.name, where=where, picture=raw))

    def _dataset_file(self, raw: Path, what: str) -> None:
        path = self.path(raw, what)
        if path.is_dir():
            for member in path.iterdir():
                self.path(member, say("workspace.file_in_folder", what=what))


def _under(url: str, allowed: str) -> bool:
    """Same scheme, host and port, no credentials, and a path at or below the allowed one (no dot segments or
    escapes that a server would resolve above it)."""
    try:
        asked, given = urlsplit(url.strip()), urlsplit(allowed.strip())
        ports = (asked.port, given.port)  # a malformed port raises here
    except ValueError:
        return False
    if asked.username is not None or asked.password is not None or ports[0] != ports[1]:
        return False
    if "%" in asked.path or {".", ".."} & set(asked.path.split("/")):
        return False
    base = given.path.rstrip("/")
    same_place = (asked.scheme.lower(), asked.hostname) == (given.scheme.lower(), given.hostname)
    return same_place and (asked.path.rstrip("/") == base or asked.path.startswith(base + "/"))


def _check_config_name(raw: str) -> None:
    """A name the studio may create a file under: printable, portable, and within the file system's limits."""
    bad = sorted({c for c in raw if c in _UNSAFE_CHARACTERS or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise StudioError("workspace.config_name_characters", raw=raw, shown=shown)
    if len(raw) > MAX_PATH_CHARS or any(len(part.encode()) > MAX_NAME_BYTES for part in Path(raw).parts):
        raise StudioError("workspace.config_path_too_long", max_chars=MAX_PATH_CHARS, max_bytes=MAX_NAME_BYTES)


def _absolute(raw: str | Path, root: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else root / path
