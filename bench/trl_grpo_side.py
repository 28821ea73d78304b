"""The `trl` side of bench/rl_throughput.py: TRL's GRPOTrainer, run in the LLaMA-Factory venv (TRL is there).

    bash bench/setup_llamafactory.sh          # once: .bench-venvs/llamafactory (trl 0.24)
    python bench/rl_throughput.py --stages grpo

Run by the driver with that venv's Python. It trains LoRA (r 8 / alpha 16 / dropout 0, all linear layers) with
GRPO on the driver's prompts in the driver's order (shuffle_dataset off), the same group size, answer length,
sampling settings, beta, clip range and sequence-mean loss as our side, scored by the studio's own reward
functions (studio/training/rewards.py, imported from the repository), and records what TRL logs per step:
reward, its spread, answer length and num_tokens (prompt and answer tokens so far).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROCESS_STARTED = time.time()


def true_availability_checks() -> None:
    """trl 0.24 keeps transformers' `_is_package_available(name)` as a bool, but transformers 5 returns a tuple
    (always true), so trl would import every optional package (mergekit, vllm, ...). Its flags are set to what
    they mean before the trainers are imported."""
    from trl import import_utils

    for name, value in list(vars(import_utils).items()):
        if name.startswith("_") and name.endswith("_available") and isinstance(value, tuple):
            setattr(import_utils, name, value[0])
    from transformers import PreTrainedModel

    if not hasattr(PreTrainedModel, "warnings_issued"):  # transformers 5 dropped the dict trl 0.24 writes into
        PreTrainedModel.warnings_issued = {}


def reward_function(settings: dict):
    sys.path.insert(0, str(REPO))
    from studio.config import RewardsConfig
    from studio.training.rewards import build_rewards, score

    rewards = build_rewards(RewardsConfig(**settings))

    def reward(prompts, completions, answer, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        questions = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        return [score(rewards, q, text, a)[0] for q, text, a in zip(questions, texts, answer)]

    return reward


def main(job_file: str) -> None:
    true_availability_checks()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    torch.manual_seed(job["seed"])
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": row["question"]}], "answer": row["answer"]} for row in job["rows"]]
    )
    group = job["generations"]
    config = GRPOConfig(
        output_dir=job["output_dir"],
        per_device_train_batch_size=job["prompts_per_step"] * group,
        gradient_accumulation_steps=1,
        num_generations=group,
        max_completion_length=job["max_new_tokens"],
        max_prompt_length=None,
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        repetition_penalty=1.0,
        beta=job["beta"],
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        learning_rate=job["learning_rate"],
        lr_scheduler_type="cosine",
        max_steps=job["steps"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=job["seed"],
        use_cpu=True,
        bf16=job["bf16"],
        gradient_checkpointing=False,
        shuffle_dataset=False,
        disable_dropout=True,
    )
    seen: dict = {"logs": []}

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["started"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                seen["logs"].append(
                    {k: logs.get(k) for k in ("reward", "reward_std", "num_tokens", "completions/mean_length", "kl")}
                )

        def on_train_end(self, args, state, control, **kwargs):
            seen["seconds"] = time.perf_counter() - seen["started"]

    trainer = GRPOTrainer(
        model=job["model_path"],
        reward_funcs=[reward_function(job["rewards"])],
        args=config,
        train_dataset=dataset,
        peft_config=LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[Measure()],
    )
    trainer.train()
    logs = seen["logs"]
    result = {
        "seconds": seen["seconds"],
        "tokens": int(logs[-1]["num_tokens"]) if logs and logs[-1]["num_tokens"] else 0,
        "rewards": [log["reward"] for log in logs],
        "lengths": [log["completions/mean_length"] for log in logs],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
