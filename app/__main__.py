"""`python -m app` / `qlora-studio webui`: serve the studio.

The Gradio studio (Train, Evaluate & Predict, Chat, Export) is being built; until it lands this
entry point explains how to train from the command line instead.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qlora-studio webui")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.parse_args(argv)
    print(
        "The browser studio is not part of this version yet.\n"
        "Train from the command line meanwhile:\n"
        "  qlora-studio train examples/demo.yaml\n"
        "  qlora-studio runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
