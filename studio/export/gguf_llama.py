"""The written GGUF run by llama.cpp itself: its greedy answers to the check prompts against the merged model's.

    merged model (transformers, greedy) -> answer ids per prompt        (before the file is written)
    the .gguf in llama.cpp (CPU, greedy, seed 0) -> answer ids for the same prompt ids
    -> prompt by prompt: equal, or how many tokens agree before the first difference

Both models answer the same prompt ids (rendered by the studio's chat template, tokenised by the studio's tokenizer),
so the comparison is of the weights and llama.cpp's arithmetic; whether llama.cpp's own tokenizer reads the rendered
prompts into the same ids is reported beside it. An f16/bf16 file answers exactly as the merged model on these
prompts; a quantised type agrees for a while and then drifts, which the agreement states. Where an answer parts, the
merged model's margin between its two likeliest tokens there is reported: within the export's logit tolerance it is
a near tie, which any other arithmetic (llama.cpp's kernels, even at f32) may break, not a fault of the file.
Without llama-cpp-python (the extra `gguf-check`) the report says what installing it adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studio.errors import StudioError
from studio.locales import Message, say
from studio.modeling import llama_cpp

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ANSWER_TOKENS = 24  # per prompt: long enough for a quantised file to drift, short enough for a CPU export
EXACT_TYPES = ("f32", "f16", "bf16")  # no rounding beyond the 16-bit weights: the answers must be equal


@dataclass
class PromptAnswers:
    prompt: str
    merged: list[int]  # the merged model's greedy answer (transformers), its end token included
    margins: list[float]  # at each of its steps, its top logit minus its second
    llama_cpp: list[int]  # llama.cpp's, from the same prompt ids

    @property
    def same(self) -> int:
        """Tokens alike before the first difference."""
        count = 0
        for a, b in zip(self.merged, self.llama_cpp):
            if a != b:
                break
            count += 1
        return count

    @property
    def equal(self) -> bool:
        return self.merged == self.llama_cpp

    @property
    def margin(self) -> float | None:
        """The merged model's margin where the answers part (None where they do not, or one merely ends first)."""
        return self.margins[self.same] if not self.equal and self.same < len(self.margins) else None


@dataclass
class LlamaCppCheck:
    version: str  # llama-cpp-python's
    answers: list[PromptAnswers]
    tokenizer_matches: bool  # llama.cpp tokenises the rendered prompts into the studio's ids
    tolerance: float  # the export's logit tolerance: a margin within it is a near tie
    error: Message | None = None  # why llama.cpp could not load the file

    @property
    def equal(self) -> bool:
        return not self.error and all(a.equal for a in self.answers)

    @property
    def parted_at_ties(self) -> bool:
        """Every answer that differs parts at a near tie of the merged model (and one does differ)."""
        parted = [a.margin for a in self.answers if not a.equal]
        return bool(parted) and all(m is not None and m <= self.tolerance for m in parted)

    @property
    def agreement(self) -> tuple[int, int]:
        """(tokens alike before each prompt's first difference, tokens of the longer answer), summed over prompts."""
        return sum(a.same for a in self.answers), sum(max(len(a.merged), len(a.llama_cpp)) for a in self.answers)


@torch.inference_mode()
def merged_answers(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: str
) -> list[tuple[list[int], list[float]]]:
    """The merged model's (transformers', untyped) greedy answer ids to each prompt as Chat renders it, up to an end
    token or ANSWER_TOKENS, whatever sampling its generation config asks for; with each step's margin between its
    two likeliest tokens."""
    from studio.modeling.chat_templates import stop_ids

    ends = sorted(stop_ids(model, tokenizer))
    answers = []
    for ids in prompt_ids(tokenizer, prompts):
        out = model.generate(
            torch.tensor([ids], device=device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=1.0,
            max_new_tokens=ANSWER_TOKENS,
            eos_token_id=ends,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0],
            output_logits=True,
            return_dict_in_generate=True,
        )
        margins = [float(top[0] - top[1]) for top in (step[0].float().topk(2).values for step in out.logits)]
        answers.append((out.sequences[0, len(ids) :].tolist(), margins))
    return answers


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[list[int]]:
    """Each prompt as one user turn with the generation prompt, in the studio's chat template, as ids."""
    texts = [_text(tokenizer, prompt) for prompt in prompts]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def _text(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    messages = [{"role": "user", "content": prompt}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def check_in_llama_cpp(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    merged: list[tuple[list[int], list[float]]],
    tolerance: float,
) -> LlamaCppCheck:
    """The file loaded by llama.cpp (CPU, greedy, seed 0), answering each prompt from the studio's prompt ids;
    `merged`: merged_answers' answers to compare with."""
    asked = prompt_ids(tokenizer, prompts)
    try:
        llm = llama_cpp.open_gguf(path, n_ctx=max(len(ids) for ids in asked) + ANSWER_TOKENS + 8)
    except StudioError as error:
        return LlamaCppCheck(llama_cpp.version(), [], False, tolerance, error.message)
    try:
        own = [llm.tokenize(_text(tokenizer, p).encode("utf-8"), add_bos=False, special=True) for p in prompts]
        answers = [
            PromptAnswers(prompt, ids, margins, list(llama_cpp.sample(llm, asked_ids, ANSWER_TOKENS)))
            for prompt, asked_ids, (ids, margins) in zip(prompts, asked, merged)
        ]
    finally:
        llm.close()
    return LlamaCppCheck(llama_cpp.version(), answers, own == asked, tolerance)


def report_lines(check: LlamaCppCheck | None, gguf_type: str) -> list[Message]:
    """What the check says, a line each: the verdict, the tokenizer, then prompt by prompt; without
    llama-cpp-python, what installing it adds."""
    if check is None:
        return [say("export.llama_cpp_missing", command=llama_cpp.PIP_COMMAND)]
    if check.error:
        return [say("export.llama_cpp_unloadable", version=check.version, reason=check.error)]
    same, total = check.agreement
    if check.equal:
        head = say("export.llama_cpp_equal", version=check.version, prompts=len(check.answers), tokens=total)
    elif gguf_type in EXACT_TYPES and check.parted_at_ties:
        equal = sum(a.equal for a in check.answers)
        head = say(
            "export.llama_cpp_equal_but_ties",
            version=check.version,
            equal=equal,
            prompts=len(check.answers),
            tolerance=check.tolerance,
        )
    elif gguf_type in EXACT_TYPES:
        head = say("export.llama_cpp_not_equal", version=check.version, type=gguf_type, same=same, total=total)
    else:
        head = say("export.llama_cpp_agreement", version=check.version, type=gguf_type, same=same, total=total)
    tokenizer = say(
        "export.llama_cpp_tokenizer_same" if check.tokenizer_matches else "export.llama_cpp_tokenizer_differs"
    )
    return [head, tokenizer, *(_prompt_line(number, a) for number, a in enumerate(check.answers, start=1))]


def _prompt_line(number: int, answers: PromptAnswers) -> Message:
    prompt = answers.prompt if len(answers.prompt) <= 24 else answers.prompt[:23] + "…"
    if answers.equal:
        return say("export.llama_cpp_prompt_equal", number=number, prompt=prompt, ids=_ids(answers.llama_cpp))
    at = answers.same
    line = say(
        "export.llama_cpp_prompt_differs",
        number=number,
        prompt=prompt,
        same=at,
        total=max(len(answers.merged), len(answers.llama_cpp)),
        merged=_ids(answers.merged[at:]),
        llama_cpp=_ids(answers.llama_cpp[at:]),
    )
    if answers.margin is None:
        return line
    return say("export.llama_cpp_prompt_margin", line=line, margin=answers.margin)


def _ids(ids: list[int]) -> str:
    return "[" + " ".join(str(i) for i in ids) + "]"
