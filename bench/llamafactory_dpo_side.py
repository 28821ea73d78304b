"""The `llamafactory` side of bench/dpo_throughput.py: LLaMA-Factory's DPO stage, run in its own venv.

    bash bench/setup_llamafactory.sh          # once: .bench-venvs/llamafactory (trl included)
    python bench/dpo_throughput.py --model embedded --steps 4

Run by the driver with the LLaMA-Factory venv's Python, never imported by the studio. It trains
stage "dpo" with LlamaBoard's web-UI defaults (batch 2 x accumulation 8, cutoff 2048, LoRA r 8 /
alpha 16 / dropout 0 on all linear layers, cosine schedule, gradient checkpointing on, beta 0.1,
sigmoid loss, the reference = the base model with the adapter off) on the pairs the driver wrote, in
the driver's order (disable_shuffling). Per logged step it records what TRL logs: loss,
rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies.
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
    arguments = shared_arguments(
        job, data_dir, output_dir, stage="dpo", dataset="pairs", batch=job["batch"], accumulation=job["accumulation"]
    )
    arguments.update(pref_beta=job["beta"], pref_loss="sigmoid", pref_ftx=0.0, bf16=job["bf16"], use_cpu=True)
    return arguments


def write_dataset(pairs: list[dict], folder: Path) -> None:
    (folder / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
    info = {"pairs": {"file_name": "pairs.json", "ranking": True, "columns": columns}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def main(job_file: str) -> None:
    stand_in_for_media_libraries()
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    seen: dict = {"logs": [], "first_loss_s": None}

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["started"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                seen["logs"].append(
                    {
                        k: logs.get(k)
                        for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
                    }
                )
                seen["first_loss_s"] = seen["first_loss_s"] or time.time() - PROCESS_STARTED

        def on_train_end(self, args, state, control, **kwargs):
            seen["seconds"] = time.perf_counter() - seen["started"]

    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as output_dir:
        write_dataset(job["pairs"], Path(data_dir))
        run_exp(lf_arguments(job, data_dir, output_dir), callbacks=[Measure()])
    result = {
        "seconds": seen["seconds"],
        "first_loss_s": seen["first_loss_s"],
        "losses": [log["loss"] for log in seen["logs"]],
        "margins": [log["rewards/margins"] for log in seen["logs"]],
        "accuracies": [log["rewards/accuracies"] for log in seen["logs"]],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
