"""The `llamafactory` side of bench/train_throughput.py: LLaMA-Factory itself, run in its own venv.

    bash bench/setup_llamafactory.sh          # once: .bench-venvs/llamafactory
    python bench/train_throughput.py --model embedded --sides llamafactory,baseline,ours

Run by the driver with the LLaMA-Factory venv's Python, never imported by the studio. It
trains with LlamaBoard's web-UI defaults (batch 2 x accumulation 8, cutoff 2048, LoRA r 8 /
alpha 16 / dropout 0 on all linear layers, cosine schedule, gradient checkpointing on, no
packing) on the conversations the driver wrote, in the driver's order (disable_shuffling),
so its batches are the ones the other sides train on. Tokens are LLaMA-Factory's own count of
non-padding input tokens; the result line has the same fields as the other sides'. A job with
"pictures" (bench/vl_sides.py) trains a vision-language model on conversations whose turns carry
pictures, through LLaMA-Factory's mllm path (its template's plugin, multimodal collator, freeze options).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

PROCESS_STARTED = time.time()


def lf_arguments(job: dict, data_dir: str, output_dir: str) -> dict:
    cuda = job["device"] == "cuda"
    batch, accumulation = job.get("batch", 2), job.get("accumulation", 8)
    arguments = shared_arguments(
        job, data_dir, output_dir, stage="sft", dataset="bench", batch=batch, accumulation=accumulation
    )
    arguments.update(include_num_input_tokens_seen="non_padding", bf16=job.get("bf16", cuda), use_cpu=not cuda)
    if job["quant"] == "4bit":
        arguments.update(quantization_bit=4, quantization_method="bnb", double_quantization=True)
    if "pictures" in job:  # pixel bounds, and LlamaBoard's freeze defaults (written out: they decide what trains)
        arguments.update(
            **job["pictures"], freeze_vision_tower=True, freeze_multi_modal_projector=True, freeze_language_model=False
        )
    return arguments


def shared_arguments(
    job: dict, data_dir: str, output_dir: str, *, stage: str, dataset: str, batch: int, accumulation: int
) -> dict:
    """LlamaBoard's web-UI defaults for a LoRA run of `stage`, as both LLaMA-Factory sides use them; with
    job["method"] full or freeze, those weights train instead (freeze: the last job["freeze_layers"] layers,
    every module, LlamaBoard's freeze defaults). Trained weights are upcast to fp32 (no pure_bf16), as ours."""
    method = job.get("method", "lora")
    freeze = {"freeze_trainable_layers": job.get("freeze_layers", 2), "freeze_trainable_modules": "all"}
    return dict(
        stage=stage,
        do_train=True,
        model_name_or_path=job["model_path"],
        finetuning_type=method,
        **(freeze if method == "freeze" else {}),
        lora_rank=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_target="all",
        dataset=dataset,
        dataset_dir=data_dir,
        template=job["template"],
        cutoff_len=2048,
        overwrite_cache=True,
        disable_shuffling=True,
        output_dir=output_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=job["learning_rate"],
        max_steps=job["steps"],
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=job["seed"],
        plot_loss=False,
        fp16=False,
        trust_remote_code=True,
        dataloader_num_workers=0,
        preprocessing_num_workers=None,
    )


def write_dataset(conversations: list[list[dict]], folder: Path) -> None:
    """The conversations as a sharegpt file; a turn's pictures (the studio keeps their absolute paths on the turn)
    go, in order, to the record's `images` column, LLaMA-Factory's multimodal layout."""
    pictures = any("images" in turn for messages in conversations for turn in messages)
    records = [_record(messages, pictures) for messages in conversations]
    (folder / "bench.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    tags = dict(role_tag="role", content_tag="content", user_tag="user", assistant_tag="assistant", system_tag="system")
    columns = {"messages": "messages", **({"images": "images"} if pictures else {})}
    info = {"bench": {"file_name": "bench.json", "formatting": "sharegpt", "columns": columns, "tags": tags}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def _record(messages: list[dict], pictures: bool) -> dict:
    turns = [{key: value for key, value in turn.items() if key != "images"} for turn in messages]
    images = [path for turn in messages for path in turn.get("images", ())]
    return {"messages": turns, **({"images": images} if pictures else {})}


def stand_in_for_media_libraries() -> None:
    """llamafactory's multimodal plugin imports torchaudio at module level; text
    LoRA training never calls it, and no torchaudio wheel exists for torch 2.13, so an empty
    module stands in (using anything from it would fail loudly, not silently)."""
    import importlib.util
    import types

    for name in ("torchaudio",):
        if importlib.util.find_spec(name) is None:
            module = types.ModuleType(name)
            module.__spec__ = importlib.util.spec_from_loader(name, loader=None)
            sys.modules[name] = module


class PictureProcessor:
    """Stands in for Qwen2VLProcessor, which LLaMA-Factory's loader cannot build here: its video processor needs
    torchvision, and no torchvision wheel fits this venv's CPU torch (AutoProcessor raises ImportError, the loader
    logs it and goes on without a processor, and the first example with a picture is refused). For pictures the
    Qwen-VL plugin and collator ask a processor only for `image_processor`, `video_processor`'s merge size and the
    bounds `patch_processor` sets; the PIL image processor answers for both (the video path is never called)."""

    def __init__(self, folder: str, tokenizer) -> None:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.image_processor = self.video_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
        self.tokenizer = tokenizer

    def save_pretrained(self, folder: str) -> None:  # LLaMA-Factory's SaveProcessorCallback, at the end of training
        self.image_processor.save_pretrained(folder)


def stand_in_for_picture_processor() -> None:
    """The SFT workflow's tokenizer loading, with a `PictureProcessor` where LLaMA-Factory found none; the
    processor is then patched as LLaMA-Factory patches its own (pixel bounds from the model arguments)."""
    from llamafactory.model.patcher import patch_processor
    from llamafactory.train.sft import workflow

    load_tokenizer = workflow.load_tokenizer

    def with_picture_processor(model_args):
        module = load_tokenizer(model_args)
        if module["processor"] is None:
            module["processor"] = PictureProcessor(model_args.model_name_or_path, module["tokenizer"])
            patch_processor(module["processor"], module["tokenizer"], model_args)
        return module

    workflow.load_tokenizer = with_picture_processor


def allocator_in_use() -> str:
    """The studio's own reading (studio/allocator.py, standard library only), loaded from its file:
    this venv does not have the studio installed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("studio_allocator", Path(__file__).parents[1] / "studio/allocator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.allocator_in_use()


def main(job_file: str) -> None:
    stand_in_for_media_libraries()
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    if "pictures" in job:
        stand_in_for_picture_processor()
    seen: dict = {"losses": [], "first_loss_s": None}

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["started"] = time.perf_counter()
            seen["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                seen["losses"].append(logs["loss"])
                seen["first_loss_s"] = seen["first_loss_s"] or time.time() - PROCESS_STARTED

        def on_train_end(self, args, state, control, **kwargs):
            seen["seconds"] = time.perf_counter() - seen["started"]
            seen["tokens"] = int(state.num_input_tokens_seen)
            seen["samples"] = state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
            # before run_exp saves the model: serialising a whole model (full, freeze) copies it, which the other
            # sides, saving nothing, would not pay
            seen["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    if job["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as output_dir:
        write_dataset(job["conversations"], Path(data_dir))
        run_exp(lf_arguments(job, data_dir, output_dir), callbacks=[Measure()])
    result = {
        "tokens_per_s": seen["tokens"] / seen["seconds"],
        "samples_per_s": seen["samples"] / seen["seconds"],
        "seconds": seen["seconds"],
        "first_loss_s": seen["first_loss_s"],
        "losses": seen["losses"],
        "tokens": seen["tokens"],
        "peak_rss_mib": seen["peak_rss_mib"],
        "trainable_params": seen["trainable_params"],
        "allocator": allocator_in_use(),
    }
    if job["device"] == "cuda":
        result["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        result["nvidia_smi_peak_mib"] = None  # the studio's poller lives in the other venv
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
