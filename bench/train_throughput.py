"""Training throughput, ours vs the LlamaBoard-default recipe, measured side by side in one process.

    python bench/train_throughput.py --device cpu --model tiny --steps 6 --rounds 2
    python bench/train_throughput.py --device cpu --model embedded --steps 4 --rounds 2 --json

The baseline reproduces LlamaBoard's web-UI defaults with HF Trainer + PEFT (+ bitsandbytes NF4
with --quant 4bit): padding to the longest example in each batch, batch 2 x accumulation 8,
cutoff 2048, gradient checkpointing on, LoRA r 8 on all linear layers. Ours is the studio's own
training loop with the studio's defaults for the device. Both see the same tokenised examples in
the same order and run the same number of optimizer steps; sides alternate A B A B and the
ratio is ours / baseline. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch

from studio.config import DataConfig, LoraConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.data.prepare import load_conversations, tokenize_conversations
from studio.data.tokenize import Encoded
from studio.modeling.compute import resolve_plan
from studio.modeling.loader import attach_lora, load_base_model, load_tokenizer, prepare_for_training, resolve_model_path

BATCH, ACCUMULATION, CUTOFF, LR, SEED = 2, 8, 2048, 1e-4, 42


def _setup(model_name: str, quant: str, gradient_checkpointing: bool, device: str):
    model_config = ModelConfig(name_or_path=model_name)
    path = resolve_model_path(model_config)
    plan = resolve_plan(QuantizationConfig(method=quant), TrainingConfig(), cuda=device == "cuda")
    tokenizer = load_tokenizer(model_config, path)
    torch.manual_seed(SEED)
    model = prepare_for_training(load_base_model(model_config, path, plan), plan, gradient_checkpointing)
    return attach_lora(model, LoraConfig()), tokenizer, plan


def _examples(tokenizer, count: int) -> list[Encoded]:
    data = DataConfig(cutoff_len=CUTOFF)
    conversations = [c for d in load_conversations(data) for c in d.examples][:count]
    return tokenize_conversations(tokenizer, conversations, data).examples


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(args, examples_needed: int) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    started = time.perf_counter()
    model, tokenizer, plan = _setup(args.model_path, args.quant, True, args.device)
    examples = _examples(tokenizer, examples_needed)
    dataset = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels} for e in examples]
    first_loss: list[float] = []

    class FirstLoss(TrainerCallback):
        def on_log(self, args_, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and not first_loss:
                first_loss.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
            max_steps=args.steps, learning_rate=LR, logging_steps=1, save_strategy="no", report_to="none",
            gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
            use_cpu=args.device == "cpu", seed=SEED, disable_tqdm=True, remove_unused_columns=False,
            dataloader_num_workers=0, bf16=plan.weight_dtype == torch.bfloat16,
        )
        trainer = Trainer(
            model=model, args=training_args, train_dataset=dataset, callbacks=[FirstLoss()],
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
        )
        train_started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - train_started
    used = examples[: args.steps * BATCH * ACCUMULATION]  # without shuffling effects on the count
    return _summary("baseline", used, seconds, first_loss[0] if first_loss else None, result.training_loss)


def run_ours(args, examples_needed: int) -> dict:
    from studio.training.loop import Trainer

    started = time.perf_counter()
    training = TrainingConfig(
        learning_rate=LR, max_steps=args.steps, batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
        logging_steps=1, eval_steps=10**9, save_steps=10**9, seed=SEED,
    )
    device = args.device
    model, tokenizer, plan = _setup(args.model_path, args.quant, training.use_gradient_checkpointing(device), device)
    examples = _examples(tokenizer, examples_needed)
    first_loss: list[float] = []
    losses: list[float] = []

    def emit(event):
        if event.type == "step":
            losses.append(event.loss)
            if not first_loss:
                first_loss.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, examples, [], training, LoraConfig(), plan, tokenizer.pad_token_id, Path(out), emit, threading.Event())
        train_started = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - train_started
    used = examples[: args.steps * BATCH * ACCUMULATION]
    return _summary("ours", used, seconds, first_loss[0] if first_loss else None, sum(losses) / max(1, len(losses)))


def _summary(side: str, examples: list[Encoded], seconds: float, first_loss_s: float | None, loss: float) -> dict:
    tokens = sum(len(e.input_ids) for e in examples)
    return {
        "side": side, "tokens_per_s": tokens / seconds, "samples_per_s": len(examples) / seconds,
        "peak_rss_mib": _peak_rss_mib(), "first_loss_s": first_loss_s, "mean_loss": loss, "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'embedded', or a hub id / folder")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    args = parser.parse_args()
    if args.model == "tiny":
        from studio.modeling.tiny import build_tiny_model

        args.model_path = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", hidden=256, layers=4))
    else:
        args.model_path = "embedded:SmolLM2-135M-Instruct" if args.model == "embedded" else args.model
    needed = args.steps * BATCH * ACCUMULATION
    results = {"baseline": [], "ours": []}
    for round_index in range(args.rounds):  # A B A B: drift in machine load hits both sides
        for side, run in (("baseline", run_baseline), ("ours", run_ours)):
            result = run(args, needed)
            results[side].append(result)
            print(f"round {round_index + 1} {side:8} {result['tokens_per_s']:8.1f} tok/s  {result['samples_per_s']:6.2f} samples/s  "
                  f"first loss {result['first_loss_s']:.1f} s  mean loss {result['mean_loss']:.4f}", flush=True)
    best = {side: max(r["tokens_per_s"] for r in runs) for side, runs in results.items()}
    ratio = best["ours"] / best["baseline"]
    print(f"\n{args.model} on {args.device} ({args.quant}): ours {best['ours']:.1f} tok/s vs baseline {best['baseline']:.1f} tok/s "
          f"-> ratio {ratio:.2f}x (peak RSS of the process {_peak_rss_mib():.0f} MiB)")
    if args.json:
        print(json.dumps({"model": args.model, "device": args.device, "quant": args.quant, "ratio": round(ratio, 3), "runs": results}))


if __name__ == "__main__":
    main()
