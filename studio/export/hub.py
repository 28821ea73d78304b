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
from studio.text import Bilingual

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CARD = "README.md"


class HubError(StudioError):
    pass


@dataclass
class Upload:
    """What one commit sends: files by their name in the repo, the card's text, and what the folder is."""

    kind: str  # "adapter" or "export"
    files: dict[str, Path]
    card: str


@dataclass
class PushReport:
    repo_id: str
    url: str
    files: list[str]


def unreachable_reason(timeout: float = 3.0) -> Bilingual | None:
    """Why the Hub cannot be reached from here, or None when a connection opens."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return Bilingual(
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the studio does not contact the Hub.",
            "已设置 HF_HUB_OFFLINE（或 TRANSFORMERS_OFFLINE），工作室不会连接 Hugging Face Hub。",
        )
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return Bilingual(
            f"This machine cannot reach {endpoint.hostname} ({reason}); uploading needs a network connection to it.",
            f"本机无法连接 {endpoint.hostname}（{reason}）；上传需要能访问该地址的网络。",
        )
    return None


def plan_upload(folder: Path, card: str | None = None) -> Upload:
    """The files of an adapter folder (card `card`) or of a checked export folder (its own card)."""
    folder = Path(folder)
    if (folder / "EXPORT_FAILED_CHECK.txt").exists():
        raise HubError(
            f"{folder} failed its reload check; export again before uploading it.",
            f"{folder} 未通过重新加载校验；请重新导出后再上传。",
        )
    files = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    if "adapter_config.json" in files:
        kind = "adapter"
    elif "config.json" in files or any(name.endswith(".gguf") for name in files):
        kind = "export"
    else:
        raise HubError(
            f"{folder} is neither an adapter (adapter_config.json) nor an export (config.json or a .gguf).",
            f"{folder} 既不是适配器（缺少 adapter_config.json），也不是导出结果（缺少 config.json 或 .gguf）。",
        )
    own_card = files.pop(CARD, None)
    text = (
        card
        if kind == "adapter" and card
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
        raise HubError(f"Cannot upload: {reason}", f"无法上传：{reason.zh}")
    api = HfApi(token=token or None)  # None: HF_TOKEN or the saved login
    operations = [CommitOperationAdd(name, str(path)) for name, path in upload.files.items()]
    operations.append(CommitOperationAdd(CARD, upload.card.encode("utf-8")))
    try:
        progress(Bilingual(f"Creating (or reusing) the model repo {repo_id}", f"正在创建（或沿用）模型仓库 {repo_id}"))
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        progress(
            Bilingual(
                f"Uploading {len(operations)} files in one commit", f"正在以一次提交上传 {len(operations)} 个文件"
            )
        )
        api.create_commit(repo_id, operations, commit_message=f"Upload {upload.kind} from QLoRA Studio")
    except HfHubHTTPError as error:  # its message is the server's answer: no token in it
        status = getattr(error.response, "status_code", "?")
        hint = " Check the token (it needs write access)." if status in (401, 403) else ""
        raise HubError(
            f"The Hub refused the upload to {repo_id} (HTTP {status}).{hint}",
            f"Hub 拒绝了上传到 {repo_id} 的请求（HTTP {status}）。" + ("请检查令牌（需要写权限）。" if hint else ""),
        ) from None
    except Exception as error:
        if not _is_transport_error(error):
            raise
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise HubError(
            f"The upload to {repo_id} was cut off: {reason}.", f"上传到 {repo_id} 时连接中断：{reason}。"
        ) from None
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
        raise HubError(
            f"Give the repo as owner/name, e.g. my-name/my-model (got {repo_id!r}).",
            f"请以 用户名/仓库名 的形式填写仓库，例如 my-name/my-model（当前为 {repo_id!r}）。",
        )
    return repo_id
