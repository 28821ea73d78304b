"""llama.cpp itself, through llama-cpp-python (the optional extra `gguf-check`): a GGUF file opened on the CPU and
answered from token ids, the way its users run it.

The package builds llama.cpp from source when installed, so it is optional and imported only here, lazily: without
it the export's check and Chat say what installing it adds (PIP_COMMAND) rather than fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import StudioError

if TYPE_CHECKING:
    from llama_cpp import Llama

# The line a user runs: llama-cpp-python compiles llama.cpp (a C++ compiler and cmake; `bash scripts/setup.sh
# gguf-check` installs those first). Skipping the multimodal library shortens the build and nothing here uses it.
PIP_COMMAND = 'CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip install "llama-cpp-python>=0.3.36"'


class LlamaCppMissing(StudioError):
    """llama-cpp-python is not installed: the message names PIP_COMMAND."""


def installed() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def check_installed() -> None:
    """LlamaCppMissing, which names PIP_COMMAND, unless llama-cpp-python is installed."""
    if not installed():
        raise LlamaCppMissing("modeling.llama_cpp_missing", command=PIP_COMMAND)


def version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def open_gguf(path: Path, n_ctx: int, seed: int = 0) -> Llama:
    """The file loaded by llama.cpp on the CPU (no GPU layers), quiet, with room for `n_ctx` tokens or the length
    it was trained for if shorter; LlamaCppMissing without the package, StudioError (its reason) when llama.cpp
    refuses the file."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LlamaCppMissing("modeling.llama_cpp_missing", command=PIP_COMMAND) from None
    n_ctx = min(n_ctx, _trained_context(path) or n_ctx)
    try:
        return Llama(model_path=str(path), n_gpu_layers=0, n_ctx=n_ctx, seed=seed, verbose=False)
    except (ValueError, RuntimeError) as error:  # llama.cpp's loader says little more than that it failed
        raise StudioError("modeling.gguf_unloadable", path=path, reason=error) from None


def _trained_context(path: Path) -> int | None:
    """The file's `<architecture>.context_length`: llama.cpp warns of a cache longer than that."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(path).fields
        architecture = fields["general.architecture"].contents()
        length = fields.get(f"{architecture}.context_length")
    except (KeyError, ValueError, OSError):  # not a GGUF file: llama.cpp says so when it opens it
        return None
    return int(length.contents()) if length is not None else None


def is_end(llm: Llama, token: int) -> bool:
    """An end-of-generation token of the file's vocabulary (its EOS, <|im_end|>, <|eot_id|>, ...)."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))


def sample(
    llm: Llama,
    ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    seed: int = 0,
) -> Iterator[int]:
    """The answer's tokens after the prompt `ids`, one by one, up to an end token (yielded too) or
    `max_new_tokens`. Temperature 0 is greedy; otherwise top-k/top-p as transformers samples (no min-p)."""
    llm.set_seed(seed)
    llm.reset()  # each answer from an empty cache: the same prompt gives the same answer whatever came before
    tokens = llm.generate(
        ids,
        temp=temperature,
        top_p=top_p,
        top_k=top_k,  # 0: the whole vocabulary, as transformers' top_k=None
        min_p=0.0,
        repeat_penalty=repetition_penalty,
    )
    for count, token in enumerate(tokens, start=1):
        yield token
        if count >= max_new_tokens or is_end(llm, token):
            return


def text_of(llm: Llama, ids: list[int]) -> str:
    """The answer's text (special tokens left out); a character still missing bytes shows as U+FFFD."""
    return llm.detokenize(ids, special=False).decode("utf-8", errors="replace")
