"""Preference pairs, KTO feedback and pretraining text to token ids, the way LLaMA-Factory encodes them.

Pairs and feedback are encoded in one turn: everything before the last answer (earlier turns
included) is the prompt and is never trained; only the answer is. A pair's two answers share
the prompt exactly, truncated once for the longer answer (LLaMA-Factory's infer_seqlen over
max(chosen, rejected)), so the trainer can run the prompt once for both answers.
Pretraining documents end with the tokenizer's end-of-sequence token and are laid end to end
in rows of cutoff_len tokens; a row keeps its documents apart (each is its own piece).
Pictures stand in a pair's or feedback example's prompt: as in LLaMA-Factory's pairwise and feedback processors,
the prompt is encoded with each answer, its placeholders expanded into the pictures' tokens, so every document
(prompt + chosen, prompt + rejected, a KTO example and its KL example) carries the prompt's pictures. An example
whose truncation cuts into a picture's tokens is dropped, as a conversation is (picture_tokens.PictureEncoder.finish).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from studio.data.examples import FeedbackExample, PairwiseExample, TextDocument, kl_answers
from studio.data.formats import Message
from studio.data.tokenize import (
    IGNORE_INDEX,
    Encoded,
    PictureTokens,
    _check_tools,
    _format_pairs,
    _own_template_pairs,
    fit_turn,
    picture_messages,
)
from studio.modeling.chat_templates import format_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.modeling.chat_formats import ChatFormat


@dataclass
class EncodedPair:
    """A prompt and its chosen and rejected answers (each ending with the format's end of turn)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool = False
    reference: tuple[float, float] | None = None  # the reference model's log-probabilities of chosen and rejected
    images: tuple[str, ...] = ()  # the prompt's pictures (absolute paths), in the order their tokens stand in it

    @property
    def input_ids(self) -> list[int]:
        """The ids of the shared-prompt layout (prompt, chosen, rejected): what packing and lane planning measure."""
        return self.prompt + self.chosen + self.rejected

    def document(self, answer: list[int]) -> Encoded:
        """The prompt (with its pictures) and one answer as a plain example: only the answer is trained."""
        labels = [IGNORE_INDEX] * len(self.prompt) + answer
        return Encoded(self.prompt + answer, labels, self.truncated, self.images)


@dataclass
class EncodedFeedback:
    """A KTO example: the prompt and its answer, whether the answer is desirable, and the KL example (the same
    prompt with another example's answer) whose log-probabilities estimate how far the adapter has moved."""

    document: Encoded
    kl_document: Encoded
    desirable: bool
    reference: tuple[float, float] | None = None  # the reference's log-probabilities of the answer and the KL answer

    @property
    def input_ids(self) -> list[int]:
        return self.document.input_ids


@dataclass
class TextRow:
    """cutoff_len tokens or fewer of pretraining text: one or more documents (or parts of one), kept apart."""

    pieces: list[Encoded] = field(default_factory=list)

    @property
    def input_ids(self) -> list[int]:
        return [token for piece in self.pieces for token in piece.input_ids]


@dataclass
class EncodedPrompt:
    """A prompt for ppo and grpo: its ids up to where the answer starts, and the conversation's own answer (grpo's
    reference). `rollouts` holds the answers sampled for it in the current step."""

    prompt: list[int]
    reference: str
    question: str = ""  # the last user message, as answers tables show it
    truncated: bool = False
    rollouts: list = field(default_factory=list)

    @property
    def input_ids(self) -> list[int]:
        return self.prompt


def encode_prompt(tokenizer: PreTrainedTokenizerBase, example: list[Message], cutoff_len: int) -> EncodedPrompt | None:
    """A conversation's last answer becomes the reference; the prompt keeps its last cutoff_len tokens (its end,
    where the question is). None for a conversation without an answer."""
    if not example or example[-1]["role"] != "assistant":
        return None
    prompt, _ = encode_one_turn(tokenizer, example[:-1], example[-1])
    truncated = len(prompt) > cutoff_len
    question = next((str(m["content"]) for m in reversed(example) if m["role"] == "user"), "")
    return EncodedPrompt(prompt[-cutoff_len:], str(example[-1]["content"]), question, truncated)


def encode_one_turn(
    tokenizer: PreTrainedTokenizerBase, prompt: list[Message], answer: Message, fmt: ChatFormat | None = None
) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of a conversation whose last message is `answer`, every earlier turn in the prompt
    (as LLaMA-Factory's encode_oneturn: a reasoning format's earlier answers lose their thoughts). `fmt`: the named
    format installed on the tokenizer with another thinking setting (Chat's thinking switch); None: as installed."""
    fmt = fmt or format_of(tokenizer)
    messages = prompt + [answer]
    _check_tools(fmt, messages)
    if fmt:
        pairs = _format_pairs(tokenizer, fmt, messages, history_thoughts=False)
    else:
        pairs = _own_template_pairs(tokenizer, messages)
    prompt_ids = [token for ask, reply in pairs[:-1] for token in ask + reply] + pairs[-1][0]
    answer_ids = pairs[-1][1] + ([tokenizer.eos_token_id] if fmt and fmt.efficient_eos else [])
    return prompt_ids, answer_ids


def encode_pair(
    tokenizer: PreTrainedTokenizerBase,
    example: PairwiseExample,
    cutoff_len: int,
    pictures: PictureTokens | None = None,
) -> EncodedPair | None:
    """None when truncation leaves an answer empty or cuts into a picture. A pair whose prompt shows pictures needs
    `pictures`, the vision-language model's encoder (studio.data.picture_tokens)."""
    chosen_turns, shown = picture_messages(tokenizer, [*example.prompt, example.chosen], pictures)
    rejected_turns, _ = picture_messages(tokenizer, [*example.prompt, example.rejected], pictures)
    prompt, chosen = encode_one_turn(tokenizer, chosen_turns[:-1], chosen_turns[-1])
    _, rejected = encode_one_turn(tokenizer, rejected_turns[:-1], rejected_turns[-1])
    prompt_len, answer_len = fit_turn(len(prompt), max(len(chosen), len(rejected)), cutoff_len)
    truncated = prompt_len < len(prompt) or answer_len < max(len(chosen), len(rejected))
    pair = EncodedPair(prompt[:prompt_len], chosen[:answer_len], rejected[:answer_len], truncated)
    if pictures is not None and shown:
        if not all(pictures.finish(pair.document(answer), shown) for answer in (pair.chosen, pair.rejected)):
            return None  # truncation cut into a picture
        pair = replace(pair, images=tuple(shown))
    return pair if pair.chosen and pair.rejected else None


def _feedback_document(
    tokenizer: PreTrainedTokenizerBase,
    prompt: list[Message],
    answer: Message,
    cutoff_len: int,
    pictures: PictureTokens | None = None,
) -> Encoded | None:
    """The prompt and `answer`, cut to fit; the prompt's pictures carried (None when the cut went into one)."""
    turns, shown = picture_messages(tokenizer, [*prompt, answer], pictures)
    prompt_ids, answer_ids = encode_one_turn(tokenizer, turns[:-1], turns[-1])
    prompt_len, answer_len = fit_turn(len(prompt_ids), len(answer_ids), cutoff_len)
    truncated = prompt_len < len(prompt_ids) or answer_len < len(answer_ids)
    prompt_ids, answer_ids = prompt_ids[:prompt_len], answer_ids[:answer_len]
    document = Encoded(prompt_ids + answer_ids, [IGNORE_INDEX] * prompt_len + answer_ids, truncated)
    return pictures.finish(document, shown) if pictures is not None and shown else document


def encode_feedback(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[FeedbackExample],
    cutoff_len: int,
    pictures: PictureTokens | None = None,
) -> list[EncodedFeedback | None]:
    """Each example with its KL example: its prompt (and the prompt's pictures) with its `kl_answer`, fixed when the
    datasets were read, or else the previous example's answer in `examples` (examples.kl_answers), so the pairing
    is fixed and repeatable. None for an example truncation leaves without an answer, or cuts into a picture of."""
    encoded: list[EncodedFeedback | None] = []
    for example, partner_answer in zip(examples, kl_answers(examples), strict=True):
        prompt, answer = example.messages[:-1], example.messages[-1]
        kl_answer = example.kl_answer if example.kl_answer is not None else partner_answer
        document = _feedback_document(tokenizer, prompt, answer, cutoff_len, pictures)
        kl_document = _feedback_document(tokenizer, prompt, kl_answer, cutoff_len, pictures)
        if document is None or kl_document is None or not (document.num_label_tokens and kl_document.num_label_tokens):
            encoded.append(None)
            continue
        encoded.append(EncodedFeedback(document, kl_document, example.desirable))
    return encoded


def encode_text_rows(
    tokenizer: PreTrainedTokenizerBase, documents: list[TextDocument], cutoff_len: int
) -> list[TextRow]:
    """Documents (each closed by the end-of-sequence token) laid end to end and cut into rows of cutoff_len tokens;
    a document longer than what is left of a row continues at the start of the next one."""
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rows, row, room = [], TextRow(), cutoff_len
    for document in documents:
        ids = tokenizer.encode(document.text, add_special_tokens=False) + end
        while ids:
            part, ids = ids[:room], ids[room:]
            row.pieces.append(Encoded(part, list(part), truncated=False))
            room -= len(part)
            if room == 0:
                rows.append(row)
                row, room = TextRow(), cutoff_len
    if row.pieces:
        rows.append(row)
    return [r for r in rows if any(len(piece.input_ids) > 1 for piece in r.pieces)]  # a 1-token row predicts nothing
