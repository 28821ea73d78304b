"""The worker: `python -m studio.worker RUN_DIR` trains the run described by RUN_DIR/config.yaml.

Recipe order: load config -> setup (tokenizer, data, model, LoRA) -> train -> save -> cleanup.
Everything it has to say goes to RUN_DIR/events.jsonl; SIGTERM means "checkpoint and stop".
Launched by torchrun as one of several ranks, only rank 0 writes to the run folder; the others
read its config and status, train their share, and print what they have to say to worker.log.

A run always ends with a terminal event, even when the disk fills up: the worker holds a small
reserve file that it gives back to write its last words. When even that cannot be written, the
exit code carries the OS error to whoever reaps the worker: WRITE_FAILED_EXIT + errno.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, TextIO

from studio.allocator import allocator_in_use
from studio.config import RunConfig
from studio.gpu_monitor import GpuSampler
from studio.processes import process_start_time
from studio.runs.events import Aborted, Event, Failed, Finished, Heartbeat, Log, Phase, Started, Step, Watched
from studio.runs.folder import RunFolder, RunStatus, end_message, write_failure_exit_code
from studio.training.distributed import Ranks

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from studio.data.picture_tokens import PictureEncoder
    from studio.data.prepare import Tokenized
    from studio.modeling.compute import ComputePlan
    from studio.tracking.relay import Relay
    from studio.training.loop import Outcome, Trainer
    from studio.training.pictures import TrainingPictures
    from studio.training.reinforce import Reinforcement


class AbortRequested(Exception):
    pass


class FollowerFolder(RunFolder):
    """The run folder as a rank other than 0 sees it: read, never written (rank 0 is the record)."""

    def append(self, event: Event) -> None:
        if event.type in ("log", "failed") and getattr(event, "level", "error") != "info":
            _say(f"[rank {os.environ.get('RANK', '?')}] {event.message if isinstance(event, Log) else event.error}")

    def write_status(self, status: RunStatus) -> None:
        pass

    def reserve_space(self) -> None:
        pass

    def release_reserve(self) -> None:
        pass

    def last_terminal(self) -> Event | None:
        return None


class Worker:
    def __init__(self, folder: RunFolder, ranks: Ranks = Ranks()):
        self.folder, self.ranks = folder, ranks
        self.abort = threading.Event()
        self.val_examples: list = []  # the validation split's examples, before tokenising (watched prompts)
        self.relay: Relay | None = None  # logging.report_to's trackers, fed from rank 0's events
        self.pictures: TrainingPictures | None = None  # a vision-language model's image processor and pixel bounds
        self.encoder: PictureEncoder | None = None  # its tokenisation, which keeps each picture's token count
        self.status = folder.read_status() or RunStatus(run_id=folder.run_id, state="starting")
        # the process whose life is the run's: this worker, or with several ranks the torchrun that watches them
        alive = os.getppid() if ranks.several else os.getpid()
        self.status.pid, self.status.pid_started = alive, process_start_time(alive)

    def main(self) -> int:
        self._install_signal_handlers()
        self.folder.reserve_space()
        sampler = GpuSampler(self.folder.append).start() if self.ranks.main else None
        try:
            return self._run()
        except Exception as error:  # the run must end with a failed event whatever broke
            return self._end_failed(error)
        finally:
            if sampler:
                sampler.stop()
            if self.relay is not None:
                self.relay.close()
            self.folder.release_reserve()
            self.ranks.leave()

    def _run(self) -> int:
        started = time.time()
        try:
            config = self.folder.load_config()
            trainer = self._setup(config)
            outcome = trainer.run()
        except AbortRequested:
            return self._end_aborted(0, None)
        if outcome.aborted:
            return self._end_aborted(outcome.state.step, outcome.checkpoint)
        self._save(config, trainer)
        self._end_finished(self._result_dir(config), outcome, started)
        return 0

    # -- setup ----------------------------------------------------------------------

    def _setup(self, config: RunConfig) -> Trainer:
        import torch

        from studio.modeling.compute import resolve_plan
        from studio.modeling.loader import load_tokenizer, skip_bitsandbytes
        from studio.modeling.sources import resolve_model_path
        from studio.training.pictures import TrainingPictures

        plan = resolve_plan(config.quantization, config.training, finetuning=config.finetuning.method)
        self.ranks = dataclasses.replace(self.ranks, strategy=config.distributed.strategy)
        if not plan.quantized and not config.optimizer.imports_bitsandbytes:
            skip_bitsandbytes()
        if self.ranks.several:
            self._phase("loading_model", f"Joining the other {self.ranks.world - 1} processes of the run")
            self.ranks.join(plan.device)
        self._phase("loading_model", f"Preparing {config.model.name_or_path} ({plan.method})")
        if plan.device == "cpu" and config.training.precision == "auto" and plan.weight_dtype == torch.bfloat16:
            self._info(
                "This CPU computes bf16 natively (AVX512-BF16 or AMX), so training.precision 'auto' trains in bf16, "
                "as the recipe does on a GPU; set it to fp32 to train in full precision."
            )
        model_path = resolve_model_path(config.model, progress=self._info)
        tokenizer = self.tokenizer = load_tokenizer(config.model, model_path, info=self._info)
        self.pictures = TrainingPictures.of(config.model, model_path)  # loaded once: data, forward pass and save
        data = self._load_data(config, tokenizer)
        if config.training.auto_batch_size:  # the largest micro-batch that fits, now that the lengths are known
            config = self._auto_batch(config, model_path, plan.device, data[0])
        self._checkpoint_abort()
        self._phase("loading_model", f"Loading weights of {config.model.name_or_path}")
        torch.manual_seed(config.training.seed)
        model = self._load_model(config, model_path, plan, _planned_tokens(config, data[0].examples))
        self._checkpoint_abort()
        reinforce = self._reinforcement(config, tokenizer, model_path, plan)
        trainer = self._make_trainer(config, model, tokenizer, data, plan, reinforce)
        self._report_to_trackers(config)
        self._announce(config, plan, model, data, trainer)
        return trainer

    def _load_data(self, config: RunConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Tokenized, Tokenized]:
        from studio.data.examples import to_record
        from studio.data.prepare import check_vision, load_stage_examples, split_conversations, tokenize_for_stage

        stage = config.training.stage
        self._phase("loading_data", f"Reading {', '.join(config.data.datasets)}")
        loaded = load_stage_examples(config.data, stage, config.model.hub)
        # a vision-language model's processor, loaded once (_setup): the tokens counted here are the pixels trained on
        pictures = self.encoder = self.pictures.encoder(tokenizer) if self.pictures is not None else None
        check_vision(loaded, config.model.name_or_path, vision=pictures is not None)
        split = split_conversations(loaded, config.data.val_size, config.training.seed)
        for reason, count in split.skipped.items():
            self._warn(f"Skipped {count} examples of {reason}.")
        if self.ranks.main:
            with open(self.folder.val_file, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(to_record(example), ensure_ascii=False) + "\n" for example in split.val)
        self._phase("tokenizing", f"Tokenising {len(split.train)} train and {len(split.val)} validation examples")
        train = tokenize_for_stage(tokenizer, split.train, config.data, stage, pictures)
        val = tokenize_for_stage(tokenizer, split.val, config.data, stage, pictures)
        self.val_examples = split.val  # where the watched prompts come from
        if not train.examples:
            raise ValueError("No training example is left after tokenisation; raise data.cutoff_len.")
        if train.truncated or train.dropped:
            self._warn(
                f"{train.truncated} training examples were truncated to cutoff_len={config.data.cutoff_len} tokens; "
                f"{train.dropped} had no answer (or not all their pictures) left and were dropped."
            )
        return train, val

    def _auto_batch(self, config: RunConfig, model_path: str, device: str, train: Tokenized) -> RunConfig:
        from studio.estimates.auto_batch import pick_for_worker

        config, note = pick_for_worker(config, Path(model_path), device, train.examples, self.ranks.world)
        self._info(note)
        return config

    def _load_model(
        self, config: RunConfig, model_path: str, plan: ComputePlan, planned_tokens: int
    ) -> torch.nn.Module:
        from studio.training.trainable import load_trainable_model

        return load_trainable_model(
            model=config.model,
            quantization=config.quantization,
            training=config.training,
            lora=config.lora,
            model_path=model_path,
            plan=plan,
            info=self._info,
            planned_tokens=planned_tokens,
            finetuning=config.finetuning,
            initial_dir=self._initial_adapter(config),
            tokenizer=self.tokenizer,
            cutoff_len=config.data.cutoff_len,
        )

    def _initial_adapter(self, config: RunConfig) -> Path | None:
        """Where a PiSSA/OLoRA adapter's start is kept: its final save is converted against it."""
        return self.folder.initial_adapter_dir if config.lora.init in ("pissa", "olora") else None

    def _reinforcement(
        self, config: RunConfig, tokenizer: PreTrainedTokenizerBase, model_path: str, plan: ComputePlan
    ) -> Reinforcement | None:
        """What ppo and grpo sample with and score by: the reward functions, or the reward model (loaded here)."""
        from studio.training.reinforce import Reinforcement
        from studio.training.rewards import build_rewards

        stage = config.training.stage
        if stage not in ("ppo", "grpo"):
            return None
        reinforce = Reinforcement(tokenizer, config.generation, config.training.seed, grpo=config.grpo, ppo=config.ppo)
        if stage == "grpo":
            reinforce.rewards = build_rewards(config.rewards)
            return reinforce
        from studio.runs.reward_models import reward_model_folder
        from studio.training.reward_scorer import RewardScorer

        folder = reward_model_folder(config.ppo.reward_model or "", self.folder.path.parent)
        self._phase("loading_model", f"Loading the reward model {folder}")
        reinforce.reward_model = RewardScorer.load(
            folder, config.model, model_path, plan, tokenizer=tokenizer, cutoff_len=config.data.cutoff_len
        )
        return reinforce

    def _make_trainer(
        self,
        config: RunConfig,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        data: tuple[Tokenized, Tokenized],
        plan: ComputePlan,
        reinforce: Reinforcement | None = None,
    ) -> Trainer:
        from studio.training.loop import Trainer
        from studio.training.watch import Watcher

        train, val = data
        watcher = Watcher.of(
            tokenizer, config.evaluation, self.val_examples, config.data.cutoff_len, self.pictures, self.encoder
        )
        trainer = Trainer(
            model,
            train=list(train.examples),
            val=list(val.examples),
            config=config.training,
            lora=config.lora,
            plan=plan,
            checkpoints_dir=self.folder.checkpoints_dir,
            emit=self._emit_and_track,
            abort=self.abort,
            preference=config.preference,
            reinforce=reinforce,
            ranks=self.ranks,
            watcher=watcher,
            optimizer=config.optimizer,
            pictures=self.pictures,
        )
        self._info(f"{trainer.describe()} Memory allocator: {allocator_in_use()}.")
        if watcher is not None and val.examples and self.ranks.sharded:
            self._info("No prompts watched: with FSDP, decoding on rank 0 alone would wait for the others' shards.")
        elif watcher is not None and val.examples:
            self._info(
                f"Watching {len(watcher.prompts)} prompts: answered greedily at every evaluation, at most "
                f"{config.evaluation.watch_max_new_tokens} new tokens each."
            )
        if config.lora.init_adapter:
            self._info(f"Continuing the adapter {config.lora.init_adapter} (its rank, alpha and target modules).")
        # before a checkpoint's weights are loaded: 'initial' means the adapter as training starts
        trainer.compute_reference(base=config.preference.reference == "base" or not config.lora.init_adapter)
        self._checkpoint_abort()
        checkpoint = self.status.resume_from or config.training.resume_from_checkpoint
        if checkpoint:
            trainer.resume(checkpoint)
            self._info(f"Resumed from {checkpoint} at step {trainer.state.step}.")
        trainer.same_start()
        return trainer

    def _report_to_trackers(self, config: RunConfig) -> None:
        """From the `started` event on, the trackers of logging.report_to get what this rank's events record."""
        if config.logging.report_to and self.ranks.main:
            from studio.tracking.relay import Relay

            self.relay = Relay(self.folder.path, config, self._tracker_note)
            self.folder.listeners.append(self.relay)

    def _tracker_note(self, level: Literal["info", "warning"], message: str) -> None:
        (self._info if level == "info" else self._warn)(message)

    def _announce(
        self,
        config: RunConfig,
        plan: ComputePlan,
        model: torch.nn.Module,
        data: tuple[Tokenized, Tokenized],
        trainer: Trainer,
    ) -> None:
        from studio.modeling.loader import count_parameters

        train, val = data
        trainable, total = count_parameters(model)
        self.folder.append(
            Started(
                attempt=self.status.attempt,
                pid=os.getpid(),
                device=plan.device,
                method=str(plan.method),
                method_key=plan.method.key,
                method_args={name: str(value) for name, value in plan.method.args.items()},
                dtype=str(plan.compute_dtype).removeprefix("torch."),
                trainable_params=trainable,
                total_params=total,
                train_examples=len(train.examples),
                val_examples=len(val.examples),
                truncated_examples=train.truncated + val.truncated,
                dropped_examples=train.dropped + val.dropped,
                total_steps=trainer.schedule.total_steps,
                start_step=trainer.state.step,
                stage=config.training.stage,
                processes=self.ranks.world,
            )
        )
        self._set_status("running", device=self.status.device or plan.device, total_steps=trainer.schedule.total_steps)
        self._phase("training", plan.method)

    # -- ends -----------------------------------------------------------------------

    def _save(self, config: RunConfig, trainer: Trainer) -> None:
        import shutil

        from studio.training.checkpoint import save_adapter
        from studio.training.weights import save_whole_model

        trainer.finalize()
        weights = trainer.adapter_weights()  # every rank: gathering a sharded adapter is collective
        if not self.ranks.main:
            return
        target = self._result_dir(config)
        self._phase("saving", f"Saving the {'model' if target == self.folder.model_dir else 'adapter'} to {target}")
        staging = self.folder.path / f".{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        try:  # staged, so that an adapter or model folder is always complete (the lists trust it)
            if config.finetuning.trains_whole_model:
                save_whole_model(trainer.model, staging, trainer.plan.weight_dtype)
            else:
                save_adapter(trainer.model, staging, weights, self._initial_adapter(config))
            self.tokenizer.save_pretrained(staging)
            if self.pictures is not None:  # chat and export read the image processor beside the weights
                self.pictures.save(staging)
            config.save(staging / "studio_config.yaml")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _result_dir(self, config: RunConfig) -> Path:
        """adapter/ for lora and oft runs, model/ for full and freeze runs (a whole model)."""
        return self.folder.model_dir if config.finetuning.trains_whole_model else self.folder.adapter_dir

    def _end_finished(self, result_dir: Path, outcome: Outcome, started: float) -> None:
        state = outcome.state
        self.folder.append(
            Finished(
                step=state.step,
                adapter_dir=str(result_dir),
                train_loss=outcome.last_loss,
                best_eval_loss=state.best_eval_loss,
                best_step=state.best_step,
                stopped_early=outcome.stopped_early,
                elapsed_s=round(time.time() - started, 1),
            )
        )
        self._set_status("finished", step=state.step, message="finished")

    def _end_aborted(self, step: int, checkpoint: Path | None) -> int:
        self.folder.append(Aborted(step=step, checkpoint=str(checkpoint) if checkpoint else None))
        self._set_status("aborted", step=step, message="aborted by request")
        return 0

    def _end_failed(self, error: Exception) -> int:
        message = f"{type(error).__name__}: {error}"
        details = traceback.format_exc()
        _say(details, sys.stderr)
        if self.ranks.several and _lost_peers(error):  # the cause is another rank's end: torchrun names it
            self._warn(f"Rank {self.ranks.rank} lost contact with the other ranks: {message}")
            return 1
        try:
            return self._record_failure(message, details)
        except OSError:
            self.folder.release_reserve()  # the space held for exactly this moment
            try:
                return self._record_failure(message, details)
            except OSError as write_error:
                return write_failure_exit_code(error if isinstance(error, OSError) else write_error)

    def _record_failure(self, message: str, details: str) -> int:
        ended = self.folder.last_terminal()
        if ended is not None:  # the end was recorded and only its status lagged behind
            self._set_status(ended.type, message=end_message(ended))
            return 0 if ended.type != "failed" else 1
        try:
            self.folder.append(Failed(error=message, traceback=details[-4000:]))
        except OSError as error:  # status.json is small and replaced whole: it may still take the news
            self._set_status("failed", message=f"{message} (the failed event could not be written: {error.strerror})")
            raise
        self._set_status("failed", message=message)
        return 1

    # -- plumbing -------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        def request_abort(signum: int, frame: FrameType | None) -> None:
            self.abort.set()

        signal.signal(signal.SIGTERM, request_abort)
        signal.signal(signal.SIGINT, request_abort)
        # Past a file-size limit, write() must fail with EFBIG like a full disk, not kill the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def _checkpoint_abort(self) -> None:
        if self.abort.is_set():
            raise AbortRequested()

    def _emit_and_track(self, event: Event) -> None:
        self.folder.append(event)
        if isinstance(event, (Step, Heartbeat)):
            self._set_status("running", step=event.step)
        if isinstance(event, Watched):  # what watching cost, where a slow evaluation would be looked for
            self._info(f"Watched {len(event.rows)} prompts at step {event.step} in {event.seconds:.1f} s.")

    def _phase(
        self, name: Literal["loading_model", "loading_data", "tokenizing", "training", "saving"], message: str
    ) -> None:
        self.folder.append(Phase(name=name, message=message))
        if self.ranks.main:  # the other ranks would say the same again
            _say(f"[{name}] {message}")
        if name == "loading_model" and self.status.state == "starting":
            self._set_status("starting", message=message)

    def _info(self, message: str) -> None:
        self.folder.append(Log(level="info", message=message))
        if self.ranks.main:
            _say(message)

    def _warn(self, message: str) -> None:
        self.folder.append(Log(level="warning", message=message))  # a follower's folder prints it, with its rank
        if self.ranks.main:
            _say(f"warning: {message}")

    def _set_status(self, state: str, **changes: Any) -> None:
        self.status = self.status.model_copy(update={"state": state, **changes})
        self.folder.write_status(self.status)


def _say(text: str, stream: TextIO | None = None) -> None:
    """worker.log is for people; events.jsonl is the record. A log that cannot be written is not a failure."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _lost_peers(error: Exception) -> bool:
    """Whether a collective failed because another rank went away (gloo and NCCL say so in their messages)."""
    import torch.distributed as dist

    text = str(error)
    return isinstance(error, dist.DistError) or any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe")
    )


def _planned_tokens(config: RunConfig, train: Sequence) -> int:
    """About how many tokens the run will train on (what 'auto' compilation weighs its cost against)."""
    from studio.training.batches import StepSchedule

    training = config.training
    schedule = StepSchedule.of(len(train), training)
    mean_length = sum(len(e.input_ids) for e in train) / max(1, len(train))
    return round(schedule.total_steps * training.batch_size * training.gradient_accumulation_steps * mean_length)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m studio.worker RUN_DIR", file=sys.stderr)
        return 2
    ranks = Ranks.from_env()
    folder = RunFolder(argv[0]) if ranks.main else FollowerFolder(argv[0])
    if not folder.exists():
        print(f"{argv[0]} is not a run folder (no config.yaml)", file=sys.stderr)
        return 2
    return Worker(folder, ranks).main()


if __name__ == "__main__":
    sys.exit(main())
