"""The `llamafactory` sides of bench/rl_throughput.py: LLaMA-Factory's rm and ppo stages, run in its own venv.

    bash bench/setup_llamafactory.sh          # once: .bench-venvs/llamafactory
    python bench/rl_throughput.py --stages rm,ppo

Run by the driver with the LLaMA-Factory venv's Python, never imported by the studio. rm trains on the pairs
the driver wrote (in its order) with LlamaBoard's defaults; ppo answers the driver's prompts and is scored by
the reward model folder the driver names (the studio's rm adapter: the same `value_head.safetensors` keys as
LLaMA-Factory's own, loaded as a second LoRA adapter on the base, reward_model_type lora). Per logged step it
records what LLaMA-Factory logs (loss; for ppo the reward).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from llamafactory_side import shared_arguments, stand_in_for_media_libraries

PROCESS_STARTED = time.time()


def lf_arguments(job: dict, data_dir: str, output_dir: str) -> dict:
    stage = job["stage"]
    arguments = shared_arguments(
        job,
        data_dir,
        output_dir,
        stage=stage,
        dataset="bench",
        batch=job["batch"],
        accumulation=job["accumulation"],
    )
    arguments.update(bf16=job["bf16"], use_cpu=True)
    if stage == "ppo":
        arguments.update(
            reward_model=job["reward_model"],
            reward_model_type="lora",
            ppo_epochs=job["ppo_epochs"],
            ppo_buffer_size=1,
            ppo_target=6.0,
            max_new_tokens=job["max_new_tokens"],
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            repetition_penalty=1.0,
        )
    return arguments


def write_dataset(job: dict, folder: Path) -> None:
    if job["stage"] == "rm":
        columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
        info = {"bench": {"file_name": "rows.json", "ranking": True, "columns": columns}}
    else:
        info = {"bench": {"file_name": "rows.json"}}
    (folder / "rows.json").write_text(json.dumps(job["rows"], ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def count_sampled_tokens(seen: dict) -> None:
    """LLaMA-Factory's PPO logs no token counts: its rollout (get_inputs) is wrapped to count every query and
    response it returns (both without padding)."""
    from llamafactory.train.ppo.trainer import CustomPPOTrainer

    sample = CustomPPOTrainer.get_inputs

    def counted(self, batch):
        queries, responses = sample(self, batch)
        seen["tokens"] += sum(len(query) + len(response) for query, response in zip(queries, responses))
        return queries, responses

    CustomPPOTrainer.get_inputs = counted


def run_ppo_alone(arguments: dict, callback: object) -> None:
    """LLaMA-Factory's ppo workflow without its tuner: the tuner imports every stage, and its other stages need a
    TRL (>= 0.18) whose PPOTrainer is not the one its ppo stage is written against (<= 0.9.6)."""
    from llamafactory.hparams import get_train_args
    from llamafactory.train.ppo import workflow
    from llamafactory.train.ppo.trainer import CustomPPOTrainer
    from transformers import PreTrainedTokenizerBase

    # the bench keeps nothing, and its save_model fails under transformers 5 (no processing_class); nothing
    # saved, nothing for its value-head fix-up to read afterwards
    CustomPPOTrainer.save_model = lambda self, output_dir=None: None
    workflow.fix_valuehead_checkpoint = lambda *args, **kwargs: None
    if not hasattr(PreTrainedTokenizerBase, "additional_special_tokens_ids"):
        # transformers 5 dropped it; the ppo trainer adds these ids to its stop tokens (the eos is among them already)
        PreTrainedTokenizerBase.additional_special_tokens_ids = property(lambda self: [])
    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(arguments)
    workflow.run_ppo(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=[callback])


def main(job_file: str) -> None:
    stand_in_for_media_libraries()
    from transformers import TrainerCallback

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    seen: dict = {"logs": [], "started": time.perf_counter(), "tokens": 0}
    if job["stage"] == "ppo":
        count_sampled_tokens(seen)

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["started"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and ("loss" in logs or "reward" in logs):
                seen["logs"].append({k: logs.get(k) for k in ("loss", "reward")})

        def on_train_end(self, args, state, control, **kwargs):
            seen["seconds"] = time.perf_counter() - seen["started"]

    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as output_dir:
        write_dataset(job, Path(data_dir))
        arguments = lf_arguments(job, data_dir, output_dir)
        if job["stage"] == "ppo":
            run_ppo_alone(arguments, Measure())
        else:
            from llamafactory.train.tuner import run_exp

            run_exp(arguments, callbacks=[Measure()])
    seen.setdefault("seconds", time.perf_counter() - seen["started"])
    result = {
        "seconds": seen["seconds"],
        "losses": [log["loss"] for log in seen["logs"] if log["loss"] is not None],
        "rewards": [log["reward"] for log in seen["logs"] if log["reward"] is not None],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tokens": seen["tokens"],
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
