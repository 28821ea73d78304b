"""From a DataConfig to train/validation examples: load, convert, split, tokenise."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio.config import DataConfig
from studio.data.examples import DatasetExamples, example_pictures, to_examples, with_kl_answers
from studio.data.formats import Message
from studio.data.pictures import has_pictures, refuse_text_model
from studio.data.readers import Records, read_records
from studio.data.registry import DataError, DataKind, DatasetSpec, Hub, resolve_specs
from studio.data.tokenize import Encoded, encode_conversation
from studio.locales import say
from studio.modeling.chat_formats import FORMATS, ChatFormat, format_for_name
from studio.modeling.chat_templates import format_of
from studio.paths import resolve_dataset_dir

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerBase

    from studio.data.picture_tokens import PictureEncoder
    from studio.data.tokenize_kinds import EncodedFeedback, EncodedPair, EncodedPrompt, TextRow


@dataclass
class Split:
    train: list[list[Message]]
    val: list[list[Message]]
    skipped: dict[str, int] = field(default_factory=dict)  # keyed by Messages: '{dataset}: {reason} ({places})'


@dataclass
class Tokenized:
    examples: Sequence[Encoded | EncodedPair | EncodedFeedback | TextRow | EncodedPrompt]  # one kind per stage
    truncated: int = 0
    dropped: int = 0  # nothing left to learn after truncation


# The data kind each training stage learns from, and the keys naming stages and kinds in messages (a kind in full,
# and its short name).
# ppo and grpo answer the prompts of conversations (grpo checks its answers against the conversation's own).
STAGE_KINDS: dict[str, DataKind] = {
    "sft": "sft",
    "dpo": "pairwise",
    "kto": "kto",
    "pt": "text",
    "rm": "pairwise",
    "ppo": "sft",
    "grpo": "sft",
}
STAGE_NAMES = {stage: f"data.stage_name_{stage}" for stage in STAGE_KINDS}
# The stages that train on pictures. rm, ppo and grpo score or sample answers to text prompts only.
PICTURE_STAGES = ("sft", "dpo", "kto")
KIND_NAMES = {
    "sft": ("data.kind_sft", "data.kind_sft_short"),
    "pairwise": ("data.kind_pairwise", "data.kind_pairwise_short"),
    "kto": ("data.kind_kto", "data.kind_kto_short"),
    "text": ("data.kind_text", "data.kind_text_short"),
}
_STAGE_FOR_KIND: dict[str, str] = {}  # a kind's first stage: the one a mismatch message suggests
for _stage, _kind in STAGE_KINDS.items():
    _STAGE_FOR_KIND.setdefault(_kind, _stage)


def load_conversations(config: DataConfig) -> list[DatasetExamples]:
    """Every configured dataset read and converted to SFT conversations; raises DataError before any run starts."""
    return load_stage_examples(config, "sft")


def load_stage_examples(config: DataConfig, stage: str, hub: Hub = "huggingface") -> list[DatasetExamples]:
    """Every configured dataset read as the kind `stage` trains on; a dataset of another kind is refused
    (by its registry entry, before any file is read) with a message naming both. `hub`: model.hub, which also
    picks the hub of an entry registered on both (DatasetSpec.hub_source)."""
    dataset_dir = resolve_dataset_dir(config.dataset_dir)
    specs = resolve_specs(dataset_dir, config.datasets)
    for spec in specs:
        check_stage(spec, stage)
    loaded = [load_examples(dataset_dir, spec, config, hub) for spec in specs]
    if stage == "kto":  # paired over every dataset in order, before the split (examples.with_kl_answers)
        with_kl_answers([example for dataset in loaded for example in dataset.examples])
    return loaded


def check_stage(spec: DatasetSpec, stage: str) -> None:
    wanted = STAGE_KINDS[stage]
    if has_pictures(spec) and stage not in PICTURE_STAGES:
        raise DataError("data.pictures_stages", name=spec.name, stage=stage)
    if spec.kind == wanted:
        return
    raise DataError(
        "data.stage_mismatch",
        name=spec.name,
        stage=stage,
        stage_name=say(STAGE_NAMES[stage]),
        holds=say(KIND_NAMES[spec.kind][0]),
        wanted=say(KIND_NAMES[wanted][0]),
        wanted_short=say(KIND_NAMES[wanted][1]),
        fits=_STAGE_FOR_KIND[spec.kind],
    )


def check_sft(spec: DatasetSpec) -> None:
    check_stage(spec, "sft")


def named_format(chat_template: str, model_name: str) -> ChatFormat | None:
    """The chat format a run will use, as far as it is known before the tokenizer is loaded: the named one, or
    with 'auto' the model family's (a tokenizer's own template is known at tokenisation only)."""
    return format_for_name(model_name) if chat_template == "auto" else FORMATS.get(chat_template)


def check_masking(config: DataConfig, stage: str, fmt: ChatFormat | None) -> None:
    """LLaMA-Factory's refusals, before a run and at tokenisation: train_on_prompt and mask_history are sft's (the
    other stages learn answers only), and train_on_prompt would unlearn the answers' ends of an efficient_eos
    format (their EOS labels stand on the next prompts' first tokens)."""
    for option in ("train_on_prompt", "mask_history"):
        if getattr(config, option) and stage != "sft":
            raise DataError("data.masking_sft_only", option=option, stage=stage)
    if config.train_on_prompt and fmt is not None and fmt.efficient_eos:
        raise DataError("data.train_on_prompt_efficient_eos", template=fmt.name)


def load_examples(
    dataset_dir: Path, spec: DatasetSpec, config: DataConfig, hub: Hub = "huggingface"
) -> DatasetExamples:
    """One dataset's examples of its own kind, at most max_samples / num_samples of them."""
    records = read_records(dataset_dir, spec, hub)
    if spec.num_samples is not None:
        records = sample_records(records, spec.num_samples)
    if config.max_samples is not None:
        records.rows = records.rows[: config.max_samples]
    return to_examples(spec, records, config.system_prompt, media_dir=dataset_dir)


def check_vision(loaded: list[DatasetExamples], model_name: str, vision: bool | None) -> None:
    """A dataset that shows pictures, with a model known (`vision` False) to read text only: refused, naming both.
    None: not known yet (tokenisation refuses it then)."""
    if vision is not False:
        return
    for dataset in loaded:
        if any(example_pictures(example) for example in dataset.examples):
            refuse_text_model(model_name, dataset.dataset)


def sample_records(records: Records, count: int) -> Records:
    """The entry's num_samples as LLaMA-Factory means it: a random subset, or every row plus random repeats
    when it asks for more rows than the file has. Seeded, so runs repeat."""
    rng = random.Random(0)
    order = list(range(len(records)))
    rng.shuffle(order)
    order = order[:count] + [rng.randrange(len(records)) for _ in range(count - len(order))]
    return records.subset(order)


def split_conversations(loaded: list[DatasetExamples], val_size: float, seed: int) -> Split:
    """A seeded train/validation split in which no example is in both.

    Identical examples (a dataset drawn more than once, num_samples) go to one side together, and
    validation holds one copy of each: an evaluation on examples the model also trained on would
    say nothing.
    """
    copies: dict[str, list] = {}
    for example in (example for dataset in loaded for example in dataset.examples):
        copies.setdefault(json.dumps(example, default=_identity, ensure_ascii=False, sort_keys=True), []).append(
            example
        )
    groups = list(copies.values())
    random.Random(seed).shuffle(groups)
    n_val = round(len(groups) * val_size)
    if val_size > 0 and len(groups) >= 2:
        n_val = max(1, n_val)
    skipped: dict[str, int] = {}
    for dataset in loaded:
        for reason, count in dataset.skipped.items():
            skipped[say("data.skipped_in", dataset=dataset.dataset, reason=dataset.skipped_text(reason))] = count
    val = [group[0] for group in groups[:n_val]]
    return Split(train=[example for group in groups[n_val:] for example in group], val=val, skipped=skipped)


def _identity(example: object) -> dict:
    """What makes two examples the same one: their fields, less a KTO example's KL answer (copies of one record may
    have been paired with different neighbours)."""
    return {name: value for name, value in vars(example).items() if name != "kl_answer"}


def tokenize_for_stage(
    tokenizer: PreTrainedTokenizerBase,
    examples: list,
    config: DataConfig,
    stage: str,
    pictures: PictureEncoder | None = None,
) -> Tokenized:
    """Examples of the stage's kind to what its trainer takes: Encoded conversations (sft), EncodedPair (dpo),
    EncodedFeedback (kto) or TextRow (pt). Examples left without an answer by truncation are dropped, and so are
    those truncation cut into a picture of. `pictures`: a vision-language model's encoder
    (PictureEncoder.for_model), which examples that show pictures need (sft, dpo and kto data)."""
    from studio.data.tokenize_kinds import encode_feedback, encode_pair, encode_text_rows

    check_masking(config, stage, format_of(tokenizer))
    if stage == "sft":
        return tokenize_conversations(tokenizer, examples, config, pictures)
    if stage in ("ppo", "grpo"):
        from studio.data.tokenize_kinds import encode_prompt

        prompts = [encode_prompt(tokenizer, example, config.cutoff_len) for example in examples]
        kept_prompts = [p for p in prompts if p is not None]
        truncated = sum(1 for p in kept_prompts if p.truncated)
        return Tokenized(examples=kept_prompts, truncated=truncated, dropped=len(prompts) - len(kept_prompts))
    if stage == "pt":
        return Tokenized(examples=encode_text_rows(tokenizer, examples, config.cutoff_len))
    encoded: list[EncodedPair | None] | list[EncodedFeedback | None]
    if stage in ("dpo", "rm"):
        encoded = [encode_pair(tokenizer, example, config.cutoff_len, pictures) for example in examples]
    else:
        encoded = encode_feedback(tokenizer, examples, config.cutoff_len, pictures)
    kept = [e for e in encoded if e is not None]
    truncated = sum(
        1 for e in kept if getattr(e, "truncated", False) or getattr(getattr(e, "document", None), "truncated", False)
    )
    return Tokenized(examples=kept, truncated=truncated, dropped=len(encoded) - len(kept))


def tokenize_conversations(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[Message]],
    config: DataConfig,
    pictures: PictureEncoder | None = None,
) -> Tokenized:
    examples: list[Encoded] = []
    truncated = dropped = 0
    for messages in conversations:
        encoded = encode_conversation(
            tokenizer, messages, config.cutoff_len, config.train_on_prompt, config.mask_history, pictures
        )
        if encoded is None:
            dropped += 1
            continue
        truncated += encoded.truncated
        examples.append(encoded)
    return Tokenized(examples=examples, truncated=truncated, dropped=dropped)
