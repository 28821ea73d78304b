"""Export an adapter (or a full or freeze run's model) as one GGUF file for llama.cpp / Ollama / LM Studio, then
prove the file.

    load base (unquantised) + adapter -> merge -> logits of the merged model on a few prompts
    -> write the .gguf (+ Modelfile) -> round the merged weights in memory as the type does
    -> reload the .gguf with transformers' GGUF reader -> compare logits
    -> with llama-cpp-python installed: the .gguf in llama.cpp itself -> compare greedy answers (gguf_llama)

Three numbers come out. `max_logit_diff`: the file against the merged model, what a user asks.
`expected_diff`: what the type's rounding alone causes (the merged model with its weights rounded
in memory exactly as the file stores them). `check_diff`: the file against that rounded model,
which must be float-rounding small: any mistake in names, layout, metadata or encoding shows
there, whatever the type. The tokenizer and chat template are read back from the file too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.adapters import read_adapter
from studio.config import RunConfig
from studio.export.gguf_llama import LlamaCppCheck, check_in_llama_cpp, merged_answers, report_lines
from studio.export.gguf_types import GGUF_TYPES, GgufType, round_trip
from studio.export.merge import (
    CHECK_PROMPTS,
    TOLERANCE,
    ExportError,
    load_with_adapter,
    merge,
    prepare_out_dir,
    prompt_logits,
    write_recipe,
)
from studio.export.model_card import write_model_card
from studio.locales import Message, say
from studio.modeling import llama_cpp

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from studio.combinations import Combination
    from studio.modeling.compute import ComputePlan


@dataclass
class GgufReport:
    out_dir: Path
    gguf_file: str
    gguf_type: str
    size_bytes: int
    dtype: str  # precision the merge and the checks ran in
    max_logit_diff: float  # the file vs the merged model
    expected_diff: float  # the type's rounding alone
    check_diff: float  # the file vs the merged model rounded in memory as the file stores it
    tolerance: float
    agreement: float  # share of positions where the file's most likely next token is the merged model's
    tokenizer_matches: bool
    files: list[str]
    seconds: float
    llama_cpp: LlamaCppCheck | None = None  # the file in llama.cpp itself; None without llama-cpp-python

    @property
    def passed(self) -> bool:
        unloadable = self.llama_cpp is not None and bool(self.llama_cpp.error)  # a file llama.cpp refuses is broken
        return self.check_diff <= self.tolerance and self.tokenizer_matches and not unloadable

    @property
    def llama_cpp_lines(self) -> list[Message]:
        """The llama.cpp check's lines (verdict, tokenizer, prompt by prompt), or what installing it adds."""
        return report_lines(self.llama_cpp, self.gguf_type)


def export_gguf(
    config: RunConfig,
    adapter_path: str,
    progress: Callable[[object], None] = lambda m: None,
    combination: Combination | None = None,
) -> GgufReport:
    """`combination`: a weighted combination of LoRA adapters merged instead of the adapter (merge.export_merged)."""
    from studio.export.gguf_writer import write_gguf
    from studio.export.ollama import write_modelfile

    started, info, kind = time.time(), read_adapter(adapter_path), GGUF_TYPES[config.export.gguf_type]
    _check_architecture(config, progress)  # before the output folder or any weight exists
    out_dir = prepare_out_dir(Path(config.export.output_dir))
    model, tokenizer, plan = load_with_adapter(config, info, progress, combination)
    pre = _pre_tokenizer(config, tokenizer)
    merged = merge(model, progress).eval()
    prompts = CHECK_PROMPTS[: config.export.check_prompts]
    reference = prompt_logits(merged, tokenizer, prompts, plan.device)
    # before the rounding below changes the merged weights in place
    answers = merged_answers(merged, tokenizer, prompts, plan.device) if llama_cpp.installed() else None
    path = out_dir / f"{_stem(out_dir.name)}-{kind.name}.gguf"
    progress(say("export.gguf_writing", file=path.name, kind=kind.name))
    write_gguf(path, merged, tokenizer, kind, name=f"{_stem(out_dir.name)}", pre=pre, progress=progress)
    write_modelfile(out_dir, path.name, tokenizer, config.generation)
    progress(say("export.gguf_rounding", kind=kind.name))
    rounded = _round_like_file(merged, kind, prompts, tokenizer, plan.device)
    del model, merged
    progress(say("export.gguf_reloading"))
    again, tokenizer_matches = _reload(path, tokenizer, prompts, plan)
    in_llama_cpp = _in_llama_cpp(path, tokenizer, prompts, answers, TOLERANCE[plan.weight_dtype], progress)
    report = GgufReport(
        out_dir,
        path.name,
        kind.name,
        path.stat().st_size,
        str(plan.weight_dtype).removeprefix("torch."),
        _max_diff(again, reference),
        _max_diff(rounded, reference),
        _max_diff(again, rounded),
        TOLERANCE[plan.weight_dtype],
        _agreement(again, reference),
        tokenizer_matches,
        [],
        round(time.time() - started, 1),
        in_llama_cpp,
    )
    write_model_card(out_dir, config, info, adapter_path, report, weights=_card_line(report), usage=_usage(path.name))
    write_recipe(out_dir, combination)
    report.files = sorted(p.name for p in out_dir.iterdir())
    if not report.passed:
        _refuse(report)
    return report


def _check_architecture(config: RunConfig, progress: Callable[[object], None]) -> None:
    from transformers import AutoConfig

    from studio.export.gguf_arch import architecture_of
    from studio.modeling.sources import resolve_model_path

    path = resolve_model_path(config.model, progress=progress)
    architecture_of(AutoConfig.from_pretrained(path, trust_remote_code=config.model.trust_remote_code))


def _pre_tokenizer(config: RunConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """llama.cpp's name of the tokenizer's split; refuses a tokenizer the file cannot describe."""
    from studio.export.gguf_vocab import backend_json, pre_tokenizer_name

    if config.model.is_embedded:  # converted from a GGUF: keep the split llama.cpp knows it by (digits one by one)
        return _embedded_pre() or pre_tokenizer_name(backend_json(tokenizer))
    return pre_tokenizer_name(backend_json(tokenizer))


def _embedded_pre() -> str | None:
    from gguf import GGUFReader

    from studio.modeling.embedded import gguf_file

    field = GGUFReader(gguf_file()).fields.get("tokenizer.ggml.pre")
    return field.contents() if field is not None else None


@torch.inference_mode()
def _round_like_file(
    merged: PreTrainedModel, kind: GgufType, prompts: list[str], tokenizer: PreTrainedTokenizerBase, device: str
) -> list[torch.Tensor]:
    """Logits of the merged model after rounding its weights in place as the file stores them."""
    from studio.export.gguf_writer import plan_tensors

    state = merged.state_dict()
    for item in plan_tensors(merged, kind):
        tensor = state[item.hf_name]
        values = round_trip(tensor.detach().to("cpu").float().numpy(), item.qtype)
        tensor.copy_(torch.from_numpy(values).to(tensor.dtype))
    return prompt_logits(merged, tokenizer, prompts, device)


def _reload(
    path: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[str], plan: ComputePlan
) -> tuple[list[torch.Tensor], bool]:
    """Logits of the file as transformers reads it (the studio's own GGUF path), and whether its tokenizer agrees."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=plan.weight_dtype, device_map={"": plan.device}
    ).eval()
    logits = prompt_logits(model, tokenizer, prompts, plan.device)  # the same ids: this compares weights alone
    del model
    again = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    same_ids = all(
        tokenizer(t, add_special_tokens=False)["input_ids"] == again(t, add_special_tokens=False)["input_ids"]
        for t in texts
    )
    return logits, same_ids and again.chat_template == tokenizer.chat_template


def _in_llama_cpp(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    answers: list[tuple[list[int], list[float]]] | None,
    tolerance: float,
    progress: Callable[[object], None],
) -> LlamaCppCheck | None:
    """The file's greedy answers in llama.cpp against the merged model's (`answers`); None without llama-cpp-python."""
    if answers is None:
        return None
    progress(say("export.llama_cpp_running", version=llama_cpp.version()))
    return check_in_llama_cpp(path, tokenizer, prompts, answers, tolerance)


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    same = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(a, b))
    return same / sum(x.shape[:-1].numel() for x in a)


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _card_line(report: GgufReport) -> str:
    # llama.cpp's verdict where it ran, in English like the rest of the card
    llama = f"\n- {report.llama_cpp_lines[0]}" if report.llama_cpp is not None else ""
    return (
        f"- Exported weights: GGUF {report.gguf_type} ({report.size_bytes / 2**20:.1f} MiB); reload check with "
        "transformers' "
        f"GGUF reader: max logit difference {report.max_logit_diff:.3g} from the merged model, of which "
        f"{report.expected_diff:.3g} is {report.gguf_type} rounding; same next token at {report.agreement:.1%} of "
        "positions; "
        f"file vs rounded weights {report.check_diff:.2g} "
        f"(tolerance {report.tolerance:g}); tokenizer and chat template read back "
        f"{'equal' if report.tokenizer_matches else 'DIFFERENT'}{llama}"
    )


def _usage(gguf_name: str) -> list[str]:
    return [
        "```bash",
        "ollama create my-model -f Modelfile && ollama run my-model",
        f"llama-cli -m {gguf_name} -cnv          # llama.cpp, with the chat template stored in the file",
        "```",
        "",
        "LM Studio: put the .gguf in its models folder (publisher/model/) and load it.",
        "",
    ]


def _refuse(report: GgufReport) -> None:
    if report.check_diff > report.tolerance:
        kind, diff, tolerance = report.gguf_type, report.check_diff, report.tolerance
        problem = say("export.gguf_weights_differ", kind=kind, diff=diff, tolerance=tolerance)
    elif not report.tokenizer_matches:
        problem = say("export.gguf_tokenizer_differs")
    else:  # llama.cpp refused the file
        problem = report.llama_cpp_lines[0]
    (report.out_dir / "EXPORT_FAILED_CHECK.txt").write_text(problem + "\n")  # its English: a file for a bug report
    raise ExportError("export.gguf_check_failed", problem=problem, out_dir=report.out_dir)
