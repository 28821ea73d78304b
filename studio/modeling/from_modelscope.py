"""Models and datasets from ModelScope (model.hub: modelscope): fetched by id into ModelScope's cache, then read as
local folders, so everything after the download is the local-folder path.

The optional extra `qlora-studio[modelscope]` installs the `modelscope` package; its downloads are done by the
`modelscope_hub` SDK it depends on, imported here directly: `modelscope`'s own package import loads torch, which
the supervisor checking a run must not. The cache is ModelScope's own (MODELSCOPE_CACHE, default
~/.cache/modelscope) and its endpoint is ModelScope's setting (MODELSCOPE_ENDPOINT), as its command line uses them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from studio.errors import StudioError

RepoKind = Literal["model", "dataset"]

# What each kind says when it cannot be had: its error keys (in the kind's own message area).
_KEYS = {
    "model": ("modeling.modelscope_no_model", "modeling.modelscope_offline", "modeling.modelscope_unreachable"),
    "dataset": ("data.modelscope_no_dataset", "data.modelscope_offline", "data.modelscope_unreachable"),
}


def offline() -> bool:
    """The studio's one switch for 'no network': HF_HUB_OFFLINE=1 keeps both hubs to their local caches."""
    return os.environ.get("HF_HUB_OFFLINE") == "1"


def require_package(error: type[StudioError] = StudioError) -> None:
    """An `error` with the pip command when the modelscope extra is not installed."""
    try:
        import modelscope_hub  # noqa: F401
    except ImportError:
        raise error("modeling.modelscope_missing") from None


def cached_folder(repo_id: str, kind: RepoKind = "model") -> Path | None:
    """The folder ModelScope's cache holds for `repo_id`, found without the network; None when it holds none
    (or the package is missing)."""
    try:
        from modelscope_hub.compat.snapshot_download import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type=kind, local_files_only=True))
    except Exception:  # CacheNotFound, or an id the SDK refuses to look up: not cached either way
        return None


def fetch(repo_id: str, kind: RepoKind, error: type[StudioError]) -> Path:
    """The repository's folder: downloaded or brought up to date when ModelScope answers, the cached copy when it
    does not (or HF_HUB_OFFLINE=1), else an `error` naming the id and what to do."""
    require_package(error)
    from modelscope_hub.compat.snapshot_download import snapshot_download

    no_such, offline_key, unreachable_key = _KEYS[kind]
    failure = None
    if not offline():
        try:
            return Path(snapshot_download(repo_id=repo_id, repo_type=kind))
        except Exception as caught:  # its refusal, or no answer at all (DNS, proxy, TLS, timeouts)
            if _refused(caught):
                raise error(no_such, repo_id=repo_id) from None
            failure = type(caught).__name__
    cached = cached_folder(repo_id, kind)
    if cached is not None:
        return cached
    if failure is None:
        raise error(offline_key, repo_id=repo_id)
    raise error(unreachable_key, repo_id=repo_id, error_type=failure)


def check_model(repo_id: str, error: type[StudioError]) -> None:
    """Before a run: the model is in ModelScope's cache, or ModelScope knows it (a typo is found now, not after
    the worker started); the download itself is the worker's."""
    require_package(error)
    cached = cached_folder(repo_id)
    if cached is not None and (cached / "config.json").is_file():
        return
    if offline():
        raise error("modeling.modelscope_offline", repo_id=repo_id)
    from modelscope_hub import HubApi

    try:
        HubApi().get_repo(repo_id, "model")
    except Exception as caught:  # as in fetch: a refusal is ModelScope's answer, anything else means no answer
        if _refused(caught):
            raise error("modeling.modelscope_no_model", repo_id=repo_id) from None
        raise error("modeling.modelscope_unreachable", repo_id=repo_id, error_type=type(caught).__name__) from None


def _refused(error: Exception) -> bool:
    """ModelScope answered that there is no such repository, or none this user may read (its metadata calls raise
    the SDK's own NotExistError/PermissionDeniedError, its file listings the HTTP error with the status)."""
    from modelscope_hub.errors import AuthenticationError, NotExistError, PermissionDeniedError

    if isinstance(error, (NotExistError, PermissionDeniedError, AuthenticationError)):
        return True
    return getattr(getattr(error, "response", None), "status_code", None) in (401, 403, 404)
