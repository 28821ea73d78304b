"""Push an adapter or an export folder to a Hugging Face model repo, with a model card, in one commit.

The token comes from the caller (a password field on the page, never stored) or from the
environment (HF_TOKEN, or `hf auth login`); it is handed to huggingface_hub and appears in no
message, log or file. Where the Hub cannot be reached (offline machine, HF_HUB_OFFLINE) the
upload is refused up front with the reason, before anything is read or sent.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from studio.errors import StudioError
from studio.locales import Message, say

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CARD = "README.md"


class HubError(StudioError):
    pass


@dataclass
class Upload:
    """What one commit sends: files by their name in the repo, the card's text, and what the folder is."""

    kind: str  # "adapter", "model" (a full or freeze run's) or "export"
    files: dict[str, Path]
    card: str


@dataclass
class PushReport:
    repo_id: str
    url: str
    files: list[str]


def unreachable_reason(timeout: float = 3.0) -> Message | None:
    """Why the Hub cannot be reached from here, or None when a connection opens."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return say("export.hub_offline")
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return say("export.hub_unreachable", host=endpoint.hostname, reason=reason)
    return None


def plan_upload(folder: Path, card: str | None = None) -> Upload:
    """The files of an adapter folder or a run's whole model (card `card`) or of a checked export folder (its own
    card)."""
    folder = Path(folder)
    if (folder / "EXPORT_FAILED_CHECK.txt").exists():
        raise HubError("export.hub_failed_check", folder=folder)
    files = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    if "adapter_config.json" in files:
        kind = "adapter"
    elif "config.json" in files and "studio_config.yaml" in files:  # a run's model/ (an export has no run config)
        kind = "model"
    elif "config.json" in files or any(name.endswith(".gguf") for name in files):
        kind = "export"
    else:
        raise HubError("export.hub_not_uploadable", folder=folder)
    own_card = files.pop(CARD, None)
    text = (
        card
        if kind != "export" and card
        else own_card.read_text(encoding="utf-8")
        if own_card
        else f"# {folder.name}\n"
    )
    return Upload(kind, files, text)


def push(
    upload: Upload,
    repo_id: str,
    token: str | None,
    private: bool,
    progress: Callable[[object], None] = lambda message: None,
) -> PushReport:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    repo_id = check_repo_id(repo_id)
    reason = unreachable_reason()
    if reason is not None:
        raise HubError("export.hub_cannot_upload", reason=reason)
    api = HfApi(token=token or None)  # None: HF_TOKEN or the saved login
    operations = [CommitOperationAdd(name, str(path)) for name, path in upload.files.items()]
    operations.append(CommitOperationAdd(CARD, upload.card.encode("utf-8")))
    try:
        progress(say("export.hub_creating_repo", repo_id=repo_id))
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        progress(say("export.hub_uploading", count=len(operations)))
        api.create_commit(repo_id, operations, commit_message=f"Upload {upload.kind} from QLoRA Studio")
    except HfHubHTTPError as error:  # its message is the server's answer: no token in it
        status = getattr(error.response, "status_code", "?")
        refused = "export.hub_refused_token" if status in (401, 403) else "export.hub_refused"
        raise HubError(refused, repo_id=repo_id, status=status) from None
    except Exception as error:
        if not _is_transport_error(error):
            raise
        cause = getattr(error, "strerror", None) or type(error).__name__
        raise HubError("export.hub_cut_off", repo_id=repo_id, reason=cause) from None
    return PushReport(repo_id, str(url), sorted([*upload.files, CARD]))


def _is_transport_error(error: Exception) -> bool:
    """A connection that failed, whichever HTTP client huggingface_hub uses (httpx, requests)."""
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in (
        "httpx",
        "httpx2",
        "httpcore",
        "requests",
        "urllib3",
    )


def check_repo_id(repo_id: str | None) -> str:
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.match(repo_id):
        raise HubError("export.hub_bad_repo_id", repo_id=repo_id)
    return repo_id
