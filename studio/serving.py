"""How the web UI is served: its flags (defined once, for `qlora-studio webui` and `python -m app`),
its credentials, and the decision to expose it on a network.

Credentials never have to appear on a command line, where every local user can read them
(`ps`): they come from QLORA_STUDIO_AUTH ("user:password") or from --auth-file (one
"user:password" per line). A server on an address other than loopback without them refuses to
start unless --allow-unauthenticated says that this is intended.

A client is known by the address of its connection. Only the reverse proxies named by
--forwarded-allow-ips may say, in X-Forwarded-For, which client they speak for: anyone else
could claim a new address with every request and so escape the login throttle (app.login_throttle).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import StudioError
from studio.locales import say

AUTH_ENV = "QLORA_STUDIO_AUTH"


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    workspace: str = "."
    runs_dir: str = "runs"
    config: str | None = None
    auth_file: str | None = None
    allow_unauthenticated: bool = False
    read_only_dir: list[str] = field(default_factory=list)
    allow_remote_code: bool = False
    judge_endpoint: list[str] = field(default_factory=list)
    forwarded_allow_ips: str = ""  # comma-separated proxy addresses or networks; empty: trust no one's header
    api_key_file: str | None = None  # the OpenAI-compatible API's keys (studio.openai_api.access)


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ServeOptions()
    parser.add_argument(
        "--host", default=defaults.host, help="address to listen on; anything but loopback needs credentials"
    )
    parser.add_argument("--port", type=int, default=defaults.port, help="port to listen on")
    parser.add_argument(
        "--workspace",
        default=defaults.workspace,
        help="the folder the browser may read and write in (paths from the page are confined to it)",
    )
    parser.add_argument(
        "--runs-dir", default=defaults.runs_dir, help="folder of run folders, relative to the workspace"
    )
    parser.add_argument("--config", help="YAML config whose values fill the form at start")
    parser.add_argument(
        "--auth-file", help="file with one user:password per line (or set QLORA_STUDIO_AUTH=user:password)"
    )
    parser.add_argument("--auth", help=argparse.SUPPRESS)  # kept for old scripts; visible in `ps`, so it warns
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve on a non-loopback address without a login (anyone who can reach it controls the studio)",
    )
    parser.add_argument(
        "--read-only-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder outside the workspace the browser may read from, e.g. where models live (repeatable)",
    )
    parser.add_argument(
        "--allow-remote-code",
        action="store_true",
        help="let the browser turn on model.trust_remote_code (runs Python code shipped with a model)",
    )
    parser.add_argument(
        "--judge-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="an OpenAI-compatible API the page may use as Evaluate's judge, e.g. http://127.0.0.1:8000/v1 "
        "(repeatable; URLs under it too); the page may name no other address",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default=defaults.forwarded_allow_ips,
        metavar="ADDRESSES",
        help="comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For header names the "
        "client, e.g. 127.0.0.1 for a proxy on this machine; by default no one's is believed",
    )
    parser.add_argument(
        "--api-key-file",
        help="file with the key(s) the OpenAI-compatible API (the Chat tab's switch, at /v1) asks for as "
        "'Authorization: Bearer KEY', one per line (or set QLORA_STUDIO_API_KEY); needed on any host but loopback",
    )


def options_from(args: argparse.Namespace) -> ServeOptions:
    names = ServeOptions.__dataclass_fields__
    return ServeOptions(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def to_argv(options: ServeOptions) -> list[str]:
    """The flags that give `options` again (credentials excluded: they never travel on a command line)."""
    argv = [
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--workspace",
        options.workspace,
        "--runs-dir",
        options.runs_dir,
    ]
    for flag, value in (
        ("--config", options.config),
        ("--auth-file", options.auth_file),
        ("--forwarded-allow-ips", options.forwarded_allow_ips),
        ("--api-key-file", options.api_key_file),
    ):
        if value:
            argv += [flag, value]
    argv += [arg for directory in options.read_only_dir for arg in ("--read-only-dir", directory)]
    argv += [arg for url in options.judge_endpoint for arg in ("--judge-endpoint", url)]
    argv += [
        flag
        for flag, on in (
            ("--allow-unauthenticated", options.allow_unauthenticated),
            ("--allow-remote-code", options.allow_remote_code),
        )
        if on
    ]
    return argv


def read_credentials(
    options: ServeOptions, legacy_auth: str | None = None, environ: Mapping[str, str] = os.environ
) -> list[tuple[str, str]]:
    """Every user:password the server accepts; empty when none were given."""
    found = []
    if legacy_auth:
        print(
            "warning: --auth puts the password on the command line, where every local user can read it (ps); "
            f"use {AUTH_ENV}=user:password or --auth-file instead.",
            file=sys.stderr,
        )
        found.append(_pair(legacy_auth, "--auth"))
    if environ.get(AUTH_ENV):
        found.append(_pair(environ[AUTH_ENV], AUTH_ENV))
    if options.auth_file:
        found += _read_auth_file(Path(options.auth_file).expanduser())
    return found


def _read_auth_file(path: Path) -> list[tuple[str, str]]:
    lines = secret_file_lines(path, "serving.auth_file_unreadable", "serving.auth_file_empty")
    return [_pair(line, say("serving.auth_file_line", path=path, line=n)) for n, line in lines]


def secret_file_lines(path: Path, unreadable: str, empty: str) -> list[tuple[int, str]]:
    """A secrets file's lines (numbered, stripped; blank ones and # comments left out), with a warning when other
    users can read it; StudioError `unreadable` or `empty` (with path) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as error:
        raise StudioError(unreadable, path=path, reason=error.strerror) from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} can be read by other users; chmod 600 it.", file=sys.stderr)
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    lines = [(n, line) for n, line in lines if not line.startswith("#")]
    if not lines:
        raise StudioError(empty, path=path)
    return lines


def _pair(text: str, source: str) -> tuple[str, str]:
    user, _, password = text.strip().partition(":")
    if not user or not password:
        raise StudioError("serving.auth_pair_expected", source=source)
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def trusted_proxies(options: ServeOptions) -> str:
    """--forwarded-allow-ips checked and normalised: uvicorn would take a mistyped address as a literal name
    that never matches, and "*" would let every client choose the address it is throttled by."""
    found = []
    for item in filter(None, (part.strip() for part in options.forwarded_allow_ips.split(","))):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)))
        except ValueError:
            raise StudioError("serving.bad_proxy", item=item) from None
    return ",".join(found)


def check_exposure(options: ServeOptions, credentials: list) -> None:
    """Serving beyond this machine without a login must be said out loud."""
    if credentials or is_loopback(options.host) or options.allow_unauthenticated:
        return
    raise StudioError("serving.exposed_without_login", host=options.host, env=AUTH_ENV)
