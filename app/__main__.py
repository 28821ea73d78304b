"""`python -m app` / `qlora-studio webui`: serve the studio on 127.0.0.1:7860."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qlora-studio webui", description="Serve QLoRA Studio in the browser.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", help="require a login, as user:password")
    parser.add_argument("--runs-dir", default="runs", help="folder of run folders")
    parser.add_argument("--config", help="YAML config whose values fill the form at start")
    args = parser.parse_args(argv)
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        if not user or not password:
            parser.error("--auth takes user:password")
        auth = (user, password)
    from app.server import serve

    from studio.config import ConfigError, RunConfig

    try:
        defaults = RunConfig.from_yaml(args.config) if args.config else None
    except ConfigError as error:
        parser.error(str(error))
    serve(host=args.host, port=args.port, auth=auth, runs_dir=args.runs_dir, defaults=defaults)
    return 0


if __name__ == "__main__":
    sys.exit(main())
