"""Evaluate & Predict's predictions against plain batched `model.generate`, same prompts, same settings, one run.

    python bench/eval_speed.py --adapter runs/RUN_ID/adapter          # a trained adapter: answers differ in length
    python bench/eval_speed.py                                         # a random adapter on the embedded model

Plain: for the base, then for the adapter, `generate` over batches of --plain-batch prompts in dataset
order (what a straightforward evaluation loop does). Ours: the studio's path (studio.evaluation.predict):
length-grouped batches holding base and adapter rows together, finished rows leaving the batch.
Both greedy with the same repetition penalty and max_new_tokens, so the answers must be the same;
the script says how many are. Prints generated tokens per second of each side and the ratio.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from studio.chat import ChatEngine  # noqa: E402
from studio.config import GenerationConfig, RunConfig  # noqa: E402
from studio.data.prepare import load_conversations, split_conversations  # noqa: E402
from studio.evaluation.predict import predict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", help="adapter folder (default: a random one made here)")
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct")
    parser.add_argument("--samples", type=int, default=17, help="prompts from the demo data's validation split")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--plain-batch", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="ours: samples per batch at most")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="fp32: greedy answers must then be identical (in bf16, batches of other shapes round differently)",
    )
    args = parser.parse_args()
    config = RunConfig().with_overrides({"model.name_or_path": args.model, "quantization.method": "none"})
    generation = GenerationConfig(temperature=0, max_new_tokens=args.max_new_tokens)
    engine = ChatEngine()
    engine.load(config.model, config.quantization, precision=args.precision)
    with tempfile.TemporaryDirectory() as scratch:
        adapter = engine.load_adapter(args.adapter or _random_adapter(engine, Path(scratch))).name
        prompts = _prompts(args.samples)
        plain, plain_s = _timed(lambda: _plain(engine, prompts, adapter, generation, args.plain_batch))
        ours, ours_s = _timed(
            lambda: predict(engine, prompts, [None, adapter], generation, args.batch, lambda d, t: None)
        )
    _report(engine, prompts, plain, plain_s, ours, ours_s, adapter)


def _prompts(count: int) -> list[list[dict]]:
    data = RunConfig().data
    split = split_conversations(load_conversations(data), data.val_size, 42)
    return [conversation[:-1] for conversation in (split.val + split.train)[:count]]


def _random_adapter(engine, folder: Path) -> str:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(engine.model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    model.save_pretrained(folder / "random")
    engine.model = model.unload()
    return str(folder / "random")


def _plain(engine, prompts, adapter: str, generation: GenerationConfig, batch: int) -> dict:
    """generate, column by column, batch by batch in dataset order."""
    answers = {None: [], adapter: []}
    for column in (None, adapter):
        for start in range(0, len(prompts), batch):
            chunk = prompts[start : start + batch]
            inputs = engine._encode(chunk)
            context = engine.model.disable_adapter() if column is None else _active(engine, adapter)
            with context, torch.inference_mode():
                out = engine.model.generate(
                    **inputs,
                    do_sample=False,
                    repetition_penalty=generation.repetition_penalty,
                    max_new_tokens=generation.max_new_tokens,
                    pad_token_id=engine.tokenizer.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            for row in out[:, inputs["input_ids"].shape[1] :].tolist():
                answers[column].append(
                    engine.tokenizer.decode(_until_stop(row, engine.stop_ids), skip_special_tokens=True)
                )
    return answers


def _active(engine, adapter: str):
    import contextlib

    engine.model.set_adapter(adapter)
    return contextlib.nullcontext()


def _until_stop(row: list[int], stop: set[int]) -> list[int]:
    for index, token in enumerate(row):
        if token in stop:
            return row[:index]
    return row


def _timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _report(engine, prompts, plain, plain_s, ours, ours_s, adapter) -> None:
    tokens = sum(
        len(engine.tokenizer(a, add_special_tokens=False)["input_ids"]) for answers in ours.values() for a in answers
    )
    same = sum(plain[c][i] == ours[c][i] for c in (None, adapter) for i in range(len(prompts)))
    dtype = str(engine.plan.weight_dtype).removeprefix("torch.")
    print(f"{len(prompts)} prompts x base and adapter, greedy, {dtype}; {tokens} answer tokens")
    print(f"  plain generate: {plain_s:7.1f} s  {tokens / plain_s:7.1f} tokens/s")
    print(f"  ours          : {ours_s:7.1f} s  {tokens / ours_s:7.1f} tokens/s  -> {plain_s / ours_s:.2f}x")
    print(f"  identical answers: {same} of {2 * len(prompts)}")


if __name__ == "__main__":
    main()
