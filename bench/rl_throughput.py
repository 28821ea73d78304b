"""Reward model, PPO and GRPO: ours side by side with the peers, in one run.

    bash bench/setup_llamafactory.sh                                # once: LLaMA-Factory + trl in .bench-venvs/
    python bench/rl_throughput.py --model embedded --stages rm,ppo,grpo --steps 4

Sides, each in its own process (so its peak memory is its own):
  rm    llamafactory  LLaMA-Factory 0.9.5's stage rm (LlamaBoard's defaults: pairs padded into one batch,
                      gradient checkpointing on) on the first pairs of dpo_zh_demo, in our schedule's order
        ours          the studio's stage rm on the same pairs (packed, value head on the last token)
  ppo   llamafactory  LLaMA-Factory's stage ppo against the reward model ours trained in this run (its
                      value_head.safetensors read by LLaMA-Factory as its own), alpaca_zh_demo prompts
        ours          the studio's stage ppo against the same reward model, the same prompts
  grpo  trl           TRL 0.24's GRPOTrainer, LoRA, arithmetic_zh_demo prompts, scored by the studio's reward
                      functions (the same Python), sequence-mean loss, beta 0.04
        ours          the studio's stage grpo with the same group size, answer length, sampling and rewards
Both sides of a stage train the same LoRA (r 8, alpha 16, all linear layers), learning rate, steps and
precision. Printed per side: tokens/s (for rm, prompt + chosen and prompt + rejected counted as ours counts
them; for ppo and grpo, prompt and answer tokens of every sample, generated and trained, as each side counts
them), samples/s, seconds, peak RSS, the loss or reward at the first and last step, and the ratios to the peer.
Numbers are printed, never asserted (goal: >= 2x the peer's tokens/s at <= 1.15x its peak memory, with a
reward curve that is not worse).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dpo_throughput import _result_line, prepare_model  # noqa: E402  (the sides' result line, the model flag)

BATCH, ACCUMULATION, SEED = 2, 4, 42
LR = {"rm": 1e-4, "ppo": 1e-5, "grpo": 1e-4}
GROUP, MAX_NEW_TOKENS, BETA = 4, 32, 0.04
GRPO_REWARDS = {
    "accuracy": 1.0,
    "accuracy_match": "last_number",
    "format": 1.0,
    "contains": 0.5,
    "contains_text": "<answer>",
}
LF_PYTHON = Path(
    os.environ.get("LLAMAFACTORY_PYTHON", HERE.parent / ".bench-venvs" / "llamafactory" / "bin" / "python")
)
TRL_FOR_LF_PPO = HERE.parent / ".bench-venvs" / "trl-0.9.6"
LF_TEMPLATES = {"embedded": "smollm2", "tiny": "chatml"}
PEERS = {"rm": "llamafactory", "ppo": "llamafactory", "grpo": "trl"}


def dataset_rows(name: str, count: int) -> list[dict]:
    from studio.paths import BUNDLED_DATA_DIR

    file = {"rm": "dpo_zh_demo.json", "ppo": "alpaca_zh_demo.json", "grpo": "arithmetic_zh_demo.json"}[name]
    return json.loads((BUNDLED_DATA_DIR / file).read_text(encoding="utf-8"))[:count]


def ordered(rows: list, steps: int, batch: int, accumulation: int) -> list:
    """The rows in the order the studio's schedule visits them, so an unshuffled peer sees the same steps."""
    from studio.training.batches import StepSchedule

    schedule = StepSchedule(len(rows), batch, accumulation, 1, None, SEED)
    return [rows[i] for step in range(steps) for micro in schedule.micro_batches(step) for i in micro]


# -- our side (a child process of the studio's venv) ---------------------------------------------------------


def run_ours(args) -> dict:
    import resource

    from studio.config import (
        DataConfig,
        GenerationConfig,
        GrpoConfig,
        LoraConfig,
        ModelConfig,
        PpoConfig,
        QuantizationConfig,
        RewardsConfig,
        TrainingConfig,
    )
    from studio.data.prepare import load_stage_examples, tokenize_for_stage
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.sources import resolve_model_path
    from studio.training.checkpoint import save_adapter
    from studio.training.loop import Trainer
    from studio.training.reinforce import Reinforcement
    from studio.training.rewards import build_rewards
    from studio.training.trainable import load_trainable_model

    stage = args.stage
    batch, accumulation = (BATCH, ACCUMULATION) if stage != "grpo" else (args.prompts, 1)
    training = TrainingConfig(
        stage=stage,
        learning_rate=LR[stage],
        max_steps=args.steps * (args.ppo_epochs if stage == "ppo" else 1),
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        logging_steps=1,
        eval_steps=10**6,
        save_steps=10**6,
        seed=SEED,
        early_stopping_patience=None,
    )
    plan = resolve_plan(QuantizationConfig(method="none"), training)
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config, progress=lambda _: None)
    tokenizer = load_tokenizer(model_config, path)
    dataset = {"rm": "dpo_zh_demo", "ppo": "alpaca_zh_demo", "grpo": "arithmetic_zh_demo"}[stage]
    data = DataConfig(datasets=[dataset], cutoff_len=2048, max_samples=args.steps * batch * accumulation)
    examples = [e for loaded in load_stage_examples(data, stage) for e in loaded.examples]
    train = list(tokenize_for_stage(tokenizer, examples, data, stage).examples)
    model = load_trainable_model(
        model=model_config,
        quantization=QuantizationConfig(method="none"),
        training=training,
        lora=LoraConfig(),
        model_path=path,
        plan=plan,
    )
    reinforce = None
    if stage in ("ppo", "grpo"):
        generation = GenerationConfig(
            max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=SEED
        )
        reinforce = Reinforcement(
            tokenizer,
            generation,
            SEED,
            grpo=GrpoConfig(num_generations=GROUP, beta=BETA, loss_type="sequence"),
            ppo=PpoConfig(ppo_epochs=args.ppo_epochs),
        )
        if stage == "grpo":
            reinforce.rewards = build_rewards(RewardsConfig(**GRPO_REWARDS))
        else:
            from studio.training.reward_scorer import RewardScorer

            reinforce.reward_model = RewardScorer.load(Path(args.reward_model), model_config, path, plan)
    events: list = []
    trainer = Trainer(
        model,
        train=train,
        val=[],
        config=training,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=Path(tempfile.mkdtemp()),
        emit=events.append,
        abort=threading.Event(),
        reinforce=reinforce,
    )
    counted = [0]
    tokens_of = trainer.strategy.tokens
    trainer.strategy.tokens = lambda items: counted.__setitem__(0, counted[0] + tokens_of(items)) or tokens_of(items)
    started = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - started
    if args.save_to:
        save_adapter(trainer.model, Path(args.save_to))
    steps = [e for e in events if e.type == "step"]
    rewards = [e.reward_mean for e in events if e.type == "rewards" and e.split == "train"]
    samples = args.steps * batch * accumulation * (GROUP if stage == "grpo" else 1)
    return {
        "seconds": seconds,
        "tokens": counted[0]
        if stage != "rm"
        else sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in train),
        "samples": samples,
        "losses": [e.loss for e in steps],
        "rewards": rewards,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "layout": trainer.describe(),
    }


# -- the peers ----------------------------------------------------------------------------------------------


def run_peer(args, stage: str) -> dict:
    import torch

    from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.modeling.sources import resolve_model_path

    if not LF_PYTHON.exists():
        raise SystemExit(f"No LLaMA-Factory venv at {LF_PYTHON}: run `bash bench/setup_llamafactory.sh` first.")
    path = str(resolve_model_path(ModelConfig(name_or_path=args.model_path), progress=lambda _: None))
    bf16 = resolve_plan(QuantizationConfig(method="none"), TrainingConfig()).weight_dtype == torch.bfloat16
    if stage == "grpo":
        rows = ordered(dataset_rows("grpo", args.steps * args.prompts), args.steps, args.prompts, 1)
        job = {
            "model_path": path,
            "rows": [{"question": r["instruction"], "answer": r["output"]} for r in rows],
            "generations": GROUP,
            "prompts_per_step": args.prompts,
            "max_new_tokens": MAX_NEW_TOKENS,
            "beta": BETA,
            "learning_rate": LR["grpo"],
            "steps": args.steps,
            "seed": SEED,
            "bf16": bf16,
            "rewards": GRPO_REWARDS,
            "output_dir": tempfile.mkdtemp(),
        }
        script = "trl_grpo_side.py"
    else:
        count = args.steps * BATCH * ACCUMULATION
        job = {
            "stage": stage,
            "model_path": path,
            "rows": ordered(dataset_rows(stage, count), args.steps, BATCH, ACCUMULATION),
            "template": args.lf_template or LF_TEMPLATES.get(args.model, "chatml"),
            "steps": args.steps,
            "batch": BATCH,
            "accumulation": ACCUMULATION,
            "learning_rate": LR[stage],
            "seed": SEED,
            "bf16": bf16,
            "reward_model": args.reward_model,
            "ppo_epochs": args.ppo_epochs,
            "max_new_tokens": MAX_NEW_TOKENS,
        }
        script = "llamafactory_rl_side.py"
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as job_file:
        json.dump(job, job_file, ensure_ascii=False)
        job_file.flush()
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        if stage == "ppo":  # LLaMA-Factory's PPO needs TRL's first PPOTrainer (bench/setup_llamafactory.sh)
            env.update(PYTHONPATH=os.pathsep.join([str(TRL_FOR_LF_PPO), str(HERE)]), DISABLE_VERSION_CHECK="1")
        done = subprocess.run(
            [str(LF_PYTHON), str(HERE / script), job_file.name], capture_output=True, text=True, env=env
        )
    result = _result_line(PEERS[stage], done)
    if stage == "rm":
        result["tokens"] = _pair_tokens(args, count)
    if stage == "grpo":
        result["samples"] = args.steps * args.prompts * GROUP
    else:
        result["samples"] = args.steps * BATCH * ACCUMULATION
    return result


def _pair_tokens(args, count: int) -> int:
    """The rm side's pairs counted as ours counts them (prompt + chosen and prompt + rejected)."""
    from studio.config import DataConfig, ModelConfig
    from studio.data.prepare import load_stage_examples
    from studio.data.tokenize_kinds import encode_pair
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.sources import resolve_model_path

    model = ModelConfig(name_or_path=args.model_path)
    tokenizer = load_tokenizer(model, resolve_model_path(model, progress=lambda _: None))
    [loaded] = load_stage_examples(DataConfig(datasets=["dpo_zh_demo"]), "rm")
    pairs = [encode_pair(tokenizer, e, 2048) for e in loaded.examples[:count]]
    return sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs if p)


# -- the driver ------------------------------------------------------------------------------------------------


def run_ours_child(args, stage: str, save_to: str | None = None) -> dict:
    command = [
        sys.executable,
        str(HERE / "rl_throughput.py"),
        "--child",
        stage,
        "--model-path",
        args.model_path,
        "--steps",
        str(args.steps),
        "--prompts",
        str(args.prompts),
        "--ppo-epochs",
        str(args.ppo_epochs),
    ]
    if args.reward_model:
        command += ["--reward-model", args.reward_model]
    if save_to:
        command += ["--save-to", save_to]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    from studio.allocator import with_worker_allocator

    return _result_line("ours", subprocess.run(command, capture_output=True, text=True, env=with_worker_allocator(env)))


def _row(side: str, r: dict, peer: dict | None) -> str:
    rate = r["tokens"] / r["seconds"] if r.get("tokens") else None
    ratio = ""
    if peer and peer is not r:
        peer_rate = peer["tokens"] / peer["seconds"] if peer.get("tokens") else None
        speed = f"{rate / peer_rate:.2f}x tok/s, " if rate and peer_rate else ""
        ratio = f"  {speed}{(r['samples'] / r['seconds']) / (peer['samples'] / peer['seconds']):.2f}x samples/s, "
        ratio += f"{r['peak_rss_mib'] / peer['peak_rss_mib']:.2f}x peak RSS"
    curve = r.get("rewards") or r.get("losses") or []
    name = "reward" if r.get("rewards") else "loss"
    ends = f"{name} {curve[0]:+.4f} -> {curve[-1]:+.4f} (mean {sum(curve) / len(curve):+.4f})" if curve else ""
    shown = f"{rate:8.1f} tok/s" if rate else "       ? tok/s"
    return (
        f"  {side:13} {shown}  {r['samples'] / r['seconds']:6.2f} samples/s  {r['seconds']:7.1f} s  "
        f"peak RSS {r['peak_rss_mib']:5d} MiB  {ends}{ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", help="'embedded', 'tiny' (built here) or a model folder")
    parser.add_argument("--stages", default="rm,ppo,grpo")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per side (ppo: rollouts)")
    parser.add_argument("--prompts", type=int, default=2, help="grpo: prompts per step")
    parser.add_argument("--ppo-epochs", type=int, default=1)
    parser.add_argument("--lf-template", help="LLaMA-Factory template (default: smollm2 for embedded, chatml for tiny)")
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--reward-model", help=argparse.SUPPRESS)
    parser.add_argument("--save-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.stage = args.child
        print("RESULT " + json.dumps(run_ours(args)), flush=True)
        return
    stages = args.stages.split(",")
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        args.model_path = prepare_model(args, Path(scratch))
        args.reward_model = None
        if "ppo" in stages:  # the reward model both ppo sides score with: ours, trained first
            args.reward_model = str(Path(scratch) / "reward-model")
            ours_rm = run_ours_child(args, "rm", save_to=args.reward_model)
            if "rm" in stages:
                results["rm"] = {"ours": ours_rm}
        for stage in stages:
            found = results.setdefault(stage, {})
            found[PEERS[stage]] = run_peer(args, stage)
            if "ours" not in found:
                found["ours"] = run_ours_child(args, stage)
            peer = found[PEERS[stage]]
            print(f"{stage}: {args.model} on cpu, {args.steps} steps", flush=True)
            for side in (PEERS[stage], "ours"):
                print(_row(side, found[side], peer), flush=True)
            print(f"  ours: {found['ours']['layout']}", flush=True)
    if args.json:
        print(json.dumps({"model": args.model, "steps": args.steps, "results": results}))


if __name__ == "__main__":
    main()
