"""Who may call the endpoint: its bearer keys, and the rule that serving beyond loopback needs one.

Keys never appear on a command line, where every local user can read them (`ps`): they come from QLORA_STUDIO_API_KEY
or from a key file (one key per line, '#' comments). An endpoint served on an address other than loopback answers
only requests that carry a key (`Authorization: Bearer KEY`), compared in constant time; on loopback, a key is
asked for when one was given. Without a key, a request must also name this machine in its Host header: a web page
that re-points its own domain at 127.0.0.1 (DNS rebinding) must not reach the model through the visitor's browser.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError
from studio.openai_api.errors import ApiError
from studio.serving import is_loopback, secret_file_lines

API_KEY_ENV = "QLORA_STUDIO_API_KEY"
MIN_KEY_CHARS = 16  # a key is guessed over the network, unthrottled: it must be long and random


@dataclass(frozen=True)
class Access:
    keys: tuple[str, ...] = ()
    loopback: bool = True  # served on a loopback address only

    @classmethod
    def for_host(cls, host: str, key_file: str | None = None, environ: Mapping[str, str] = os.environ) -> Access:
        return cls(read_keys(key_file, environ), is_loopback(host))

    @property
    def ready(self) -> bool:
        """Whether the endpoint may answer at all: off loopback only with a key."""
        return self.loopback or bool(self.keys)

    def check_ready(self) -> None:
        if not self.ready:
            raise StudioError("openai.exposed_without_key", env=API_KEY_ENV)

    def check(self, authorization: str | None, host: str | None) -> None:
        """Refuse a request (ApiError 401 or 403) that this endpoint must not answer."""
        if not self.ready:
            raise ApiError("openai.exposed_without_key", status=403, env=API_KEY_ENV)
        if not self.keys:
            if not _names_this_machine(host):
                raise ApiError("openai.foreign_host", status=403, host=host or "")
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError("openai.key_missing", status=401, code="invalid_api_key")
        # every key compared, each in constant time: the answer's timing says nothing about any of them
        matches = [hmac.compare_digest(given.strip().encode(), key.encode()) for key in self.keys]
        if not any(matches):
            raise ApiError("openai.key_wrong", status=401, code="invalid_api_key")


def read_keys(key_file: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    keys = [environ[API_KEY_ENV].strip()] if environ.get(API_KEY_ENV, "").strip() else []
    if key_file:
        keys += _read_key_file(Path(key_file).expanduser())
    for key in keys:
        if len(key) < MIN_KEY_CHARS:
            raise StudioError("openai.key_too_short", chars=MIN_KEY_CHARS)
    return tuple(keys)


def _read_key_file(path: Path) -> list[str]:
    return [line for _, line in secret_file_lines(path, "openai.key_file_unreadable", "openai.key_file_empty")]


def _names_this_machine(host: str | None) -> bool:
    """The Host header's name is loopback: localhost, 127.x.x.x or [::1], with any port."""
    if not host:
        return False
    name = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    return is_loopback(name) or name.endswith(".localhost")
