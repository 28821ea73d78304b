"""`python -m app` / `qlora-studio webui`: serve the studio (127.0.0.1:7860 unless told otherwise).

The server serves one workspace: it runs from that folder, and every path the page sends is
confined to it (studio.workspace). Flags are defined once, in studio.serving.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# bitsandbytes warns at import that an optional CPU kernel package is missing; the studio does not use it
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    from studio.errors import StudioError
    from studio.locales import cli_language, in_language, say
    from studio.serving import add_serve_flags, check_exposure, options_from, read_credentials, trusted_proxies

    parser = argparse.ArgumentParser(
        prog="qlora-studio webui",
        description="Serve QLoRA Studio in the browser.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_flags(parser)
    args = parser.parse_args(argv)
    options = options_from(args)
    try:
        credentials = read_credentials(options, legacy_auth=args.auth)
        check_exposure(options, credentials)
        proxies = trusted_proxies(options)
        key_file = str(Path(options.api_key_file).expanduser().resolve()) if options.api_key_file else None
        studio, defaults = _open_workspace(options)
        studio.openai_endpoint.configure(options.host, key_file)  # the Chat tab's API switch: who may call it
    except StudioError as error:
        parser.exit(2, f"error: {in_language(error, cli_language())}\n")
    from app.server import serve

    login = say("page.login_required") if credentials else ""
    serving = say("page.serving", workspace=Path.cwd(), host=options.host, port=options.port, login=login)
    print(in_language(serving, cli_language()), flush=True)
    try:
        serve(studio, options.host, options.port, credentials, defaults, trusted_proxies=proxies)
    except KeyboardInterrupt:
        pass
    return 0


def _open_workspace(options):
    """Move into the workspace (relative paths from the page mean paths in it) and open the studio there."""
    from studio.api import Studio
    from studio.config import RunConfig
    from studio.config.recipes import with_recipe
    from studio.errors import StudioError

    config = Path(options.config).expanduser().resolve() if options.config else None
    root = Path(options.workspace).expanduser().resolve()
    if not root.is_dir():
        raise StudioError("page.workspace_not_folder", path=root)
    os.chdir(root)
    defaults = RunConfig.from_yaml(config) if config else with_recipe(RunConfig())  # the default model's recipe
    studio = Studio.serving(
        root, options.runs_dir, options.read_only_dir, options.allow_remote_code, options.judge_endpoint
    )
    return studio, defaults


if __name__ == "__main__":
    sys.exit(main())
