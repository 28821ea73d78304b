"""The one front door: everything the web UI and the command line can do, as plain typed calls.

    studio = Studio("runs")                                   # the CLI: any path is accepted
    studio = Studio("runs", Workspace.serve(".", "runs"))     # the web UI: paths confined to the workspace

Serving a workspace, every path and every config that comes in is checked before anything
is read, written or loaded (studio.workspace). Failures a user can fix are StudioErrors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from studio.adapters import AdapterInfo, AdapterScan  # plain records, no torch: the page names them too
from studio.combinations import COMBINATION_TYPES, WITH_DENSITY  # torch only when one is made
from studio.config import ChatConfig, ModelConfig, QuantizationConfig, RunConfig
from studio.config.model import ChatTemplate
from studio.control.device_lock import DeviceBusy
from studio.control.devices import devices_value
from studio.control.service import AbortOutcome, ResumePlan, TrainingService
from studio.data.pictures import thumbnail_uri  # PIL only: the preview's thumbnails of pictures it already checked
from studio.errors import PathNotAllowed, StudioError
from studio.locales import Message, say
from studio.modeling.vision import IMAGE_PLACEHOLDER  # no torch: names and plain file reads
from studio.runs.folder import RunStatus, checkpoint_step
from studio.runs.history import HistoryCache, RunHistory
from studio.sweeps.spec import SweepError, SweepSpec
from studio.workspace import Workspace

if TYPE_CHECKING:  # the worker side's and chat's types: named here, imported only by the type checker
    from studio.chat import ChatEngine
    from studio.chat.engines import Engine
    from studio.chat.pictures import Picture
    from studio.chat.streaming import Answer
    from studio.combinations import Combination
    from studio.config import GenerationConfig
    from studio.control.device_lock import DeviceLocks
    from studio.control.devices import DeviceInfo
    from studio.data.preview import Preview
    from studio.data.register import Proposal
    from studio.data.registry import DatasetSpec, Hub, Registry
    from studio.estimates.data_tokens import DataTokens
    from studio.estimates.duration import Rate, TimeEstimate
    from studio.estimates.fit import FitReport
    from studio.evaluation.runner import EvalReport
    from studio.export.gguf_export import GgufReport
    from studio.export.hub import PushReport
    from studio.export.merge import ExportReport
    from studio.modeling.vision import PictureProcessor
    from studio.openai_api import OpenAIEndpoint
    from studio.runs.compare import Comparison
    from studio.runs.events import Event
    from studio.sweeps.launch import SweepCancel
    from studio.sweeps.plan import SweepPlan
    from studio.sweeps.ranking import SweepRanking
    from studio.sweeps.record import SweepInfo

__all__ = [  # what the UI needs besides the facade
    "COMBINATION_TYPES",
    "WITH_DENSITY",
    "DeviceBusy",
    "IMAGE_PLACEHOLDER",
    "Studio",
    "SweepError",
    "SweepSpec",
    "devices_value",
    "thumbnail_uri",
]


class Studio:
    def __init__(
        self, runs_dir: str | Path = "runs", workspace: Workspace | None = None, locks: DeviceLocks | None = None
    ) -> None:
        self.service = TrainingService(runs_dir, locks=locks)
        self.workspace = workspace
        self._histories = HistoryCache(self.service.read_events)
        self._adapters_read: dict = {}  # adapter configs already read, by file and modification time
        self._engine: Engine | None = None  # the HF engine or vLLM's (chat.engine), made when first needed
        self._openai: OpenAIEndpoint | None = None
        self._measured: dict[tuple, Rate] = {}  # Measure speed's rates, by setup and devices (estimates.duration)

    @classmethod
    def serving(
        cls,
        root: str | Path,
        runs_dir: str | Path,
        read_only: Iterable[str | Path] = (),
        allow_remote_code: bool = False,
        judge_endpoints: Iterable[str] = (),
    ) -> Studio:
        """The studio of a web server: every path from the page confined to the workspace `root`; it keeps
        the run queue, so queued runs start when their devices free up, whether or not a page is open."""
        studio = cls(
            runs_dir, Workspace.serve(root, runs_dir, tuple(read_only), allow_remote_code, tuple(judge_endpoints))
        )
        studio.service.keep_queue()
        _import_model_libraries()
        return studio

    @property
    def runs_dir(self) -> Path:
        return self.service.runs_dir

    # -- runs -----------------------------------------------------------------------

    def start(
        self, config: RunConfig, queue: bool = False, on_created: Callable[[str], None] = lambda run: None
    ) -> str:
        """Start a run; with `queue`, a run whose devices are busy waits in the queue instead of being refused.
        `on_created(run_id)` as soon as the run's folder exists (before its worker is spawned)."""
        self._check_config(config)
        return self.service.start(config, queue=queue, on_created=on_created)

    def devices(self) -> list[DeviceInfo]:
        """This machine's devices (GPUs with name, total and free memory; the CPU), for training.devices."""
        from studio.control.devices import list_devices

        return list_devices()

    def other_node_commands(self, config: RunConfig, run_id: str | None = None) -> list[str]:
        """For a multi-node config, the command to run on each other machine (with this run's folder)."""
        from studio.control.devices import plan_devices
        from studio.control.launcher import other_node_commands

        self._check_config(config)
        run_dir = str(self.runs_dir / run_id) if run_id else str(self.runs_dir / "RUN_ID")
        return other_node_commands(config, plan_devices(config), run_dir, self.service.python)

    def memory_estimate(self, config: RunConfig) -> Message:
        """The memory each device (or CPU process) of `config` needs, estimated from the model's config.json;
        or why there is no estimate yet. Nothing is downloaded or loaded."""
        from studio.control.devices import plan_devices
        from studio.memory_estimate import estimate_memory, local_config_dir

        self._check_config(config)
        folder = local_config_dir(config.model)
        if folder is None:
            return say("api.no_model_config_yet")
        plan = plan_devices(config)
        try:
            estimate = estimate_memory(
                config, folder, device=plan.kind, processes=plan.world_size, gpu_gib=_smallest_gpu_gib(plan.gpus)
            )
        except (ValueError, OSError) as error:  # an architecture transformers cannot build from its config alone
            return say("api.no_memory_estimate", error=error)
        return estimate.describe()

    def fit(self, config: RunConfig) -> FitReport:
        """Will it fit: the memory `config` needs on each of its devices against what each has free now, and the
        changes that would make it fit when it does not (studio.estimates.fit). The training split's own lengths
        are used when they can be counted without downloading anything."""
        from studio.control.devices import plan_devices
        from studio.estimates.data_tokens import data_tokens
        from studio.estimates.fit import check_fit
        from studio.estimates.free_memory import free_memory
        from studio.memory_estimate import local_config_dir

        self._check_config(config)
        folder = local_config_dir(config.model)
        if folder is None:
            raise StudioError("estimate.model_not_local", name=config.model.name_or_path)
        plan = plan_devices(config)
        try:
            lengths, assumed = data_tokens(config).lengths, None  # checked above
        except StudioError as error:  # the estimate stands without them, at cutoff_len, and says why
            lengths, assumed = None, error
        try:
            return check_fit(config, folder, plan, free_memory(plan), lengths, assumed)
        except (ValueError, OSError) as error:  # an architecture transformers cannot build from its config alone
            raise StudioError("api.no_memory_estimate", error=error) from None

    def data_tokens(self, config: RunConfig) -> DataTokens:
        """The training split's token count and lengths, tokenised as the worker would (sampled when large)."""
        from studio.estimates.data_tokens import data_tokens

        self._check_config(config)  # the datasets' files and pictures among the rest (Workspace.check_config)
        return data_tokens(config)

    def time_estimate(self, config: RunConfig) -> TimeEstimate:
        """How long `config` will train: its tokens over the newest rate measured for this setup and devices (a
        finished run like it, or Measure speed); StudioError estimate.no_rate when there is none yet."""
        from studio.control.devices import plan_devices
        from studio.estimates.duration import comparable_run, estimate_duration, setup_key, watch_seconds

        data = self.data_tokens(config)
        plan = plan_devices(config)
        rates = [self._measured.get((setup_key(config), plan.label))]
        rates.append(comparable_run(self.runs_dir, config, plan.kind, plan.processes))
        found = [rate for rate in rates if rate is not None]
        if not found:
            raise StudioError("estimate.no_rate")
        rate = max(found, key=lambda rate: rate.measured_at)
        watch = watch_seconds(self.runs_dir, config, plan.kind) if rate.eval_s is None else None
        return estimate_duration(config, data, rate, watch)

    def measure_speed(self, config: RunConfig, limit_s: float = 30.0) -> TimeEstimate:
        """A few real steps of `config` (at most `limit_s`, killed then; DeviceBusy while a run holds its devices),
        remembered for this setup; the time estimate they give."""
        from studio.control.devices import plan_devices
        from studio.estimates.duration import setup_key, tokens_per_step
        from studio.estimates.measure import measure_speed

        per_step = tokens_per_step(config, self.data_tokens(config))
        self.service.let_finished_workers_exit(plan_devices(config))  # a run that just ended frees its devices
        rate = measure_speed(config, self.service.locks, per_step, self.runs_dir, limit_s, self.service.python)
        self._measured[(setup_key(config), plan_devices(config).label)] = rate
        return self.time_estimate(config)

    def resume(self, run_id: str, checkpoint: int | None = None) -> ResumePlan:
        plan = self.service.resume(run_id, checkpoint)
        self._histories.forget(run_id)
        return plan

    def abort(self, run_id: str) -> AbortOutcome:
        """ "stopping" (the run checkpoints and stops), "cancelled" (a queued run left the queue) or "ended"."""
        return self.service.abort(run_id)

    def runs(self) -> list[RunStatus]:
        return self.service.list_runs()

    def status(self, run_id: str) -> RunStatus:
        return self.service.status(run_id)

    def events(self, run_id: str, offset: int = 0) -> tuple[list[Event], int]:
        return self.service.read_events(run_id, offset)

    def history(self, run_id: str) -> RunHistory:
        """The run's folded history, shared by every caller; a new snapshot whenever events arrive."""
        return self._histories.get(run_id)

    def compare(self, run_ids: list[str]) -> Comparison:
        """Comparison of the runs (rows and curves: studio.runs.compare), from their folders; damaged ones say why."""
        from studio.runs.compare import compare_runs

        return compare_runs(self.runs_dir, list(run_ids or []), self.service.status)

    # -- sweeps: one queued run per combination of a few fields' values (studio/sweeps/) ---------------

    def plan_sweep(self, config: RunConfig, spec: SweepSpec) -> SweepPlan:
        """The sweep's runs, named and validated (SweepError naming each field and value that cannot train)."""
        from studio.sweeps.plan import plan_sweep

        return plan_sweep(config, spec)

    def start_sweep(self, plan: SweepPlan) -> str:
        """Queue every run of the plan, in order (the first starts when its devices are free); the sweep id."""
        from studio.sweeps.launch import start_sweep

        return start_sweep(self.service, plan, self._check_config)

    def sweeps(self) -> list[SweepInfo]:
        """Every sweep with a run in the runs folder, newest first."""
        from studio.sweeps.record import find_sweeps

        return find_sweeps(self.runs_dir)

    def sweep_ranking(self, sweep_id: str, metric: str | None = None) -> SweepRanking:
        """The sweep's runs ranked by `metric` (default: the one it was queued with, best eval loss unless said)."""
        from studio.runs.compare import compare_runs
        from studio.sweeps.ranking import rank_sweep
        from studio.sweeps.record import find_sweep

        info = find_sweep(self.runs_dir, sweep_id)
        comparison = compare_runs(self.runs_dir, info.runs, self.service.status)
        return rank_sweep(info, comparison, metric or info.metric)

    def cancel_sweep(self, sweep_id: str, abort_running: bool = False) -> SweepCancel:
        """Its queued runs leave the queue; the one training goes on unless `abort_running` (it then checkpoints and
        stops)."""
        from studio.sweeps.launch import cancel_sweep
        from studio.sweeps.record import find_sweep

        return cancel_sweep(self.service, find_sweep(self.runs_dir, sweep_id), abort_running)

    def checkpoints(self, run_id: str) -> list[int]:
        """Steps of the run's complete checkpoints, newest first."""
        return [checkpoint_step(path) for path in self.service.folder(run_id).checkpoints()]

    def default_run(self, runs: list[RunStatus] | None = None) -> str | None:
        """The run a newly opened page shows: the live one, else the newest."""
        runs = self.runs() if runs is None else runs
        live = [s for s in runs if s.state in ("starting", "running")]
        chosen = live or runs
        return chosen[0].run_id if chosen else None

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        return self.service.wait(run_id, timeout)

    # -- configs and data -------------------------------------------------------------

    def save_config(self, config: RunConfig, path: str) -> Path:
        target = self.workspace.config_file(path, write=True) if self.workspace else _plain_path(path)
        return config.save(target)

    def load_config(self, path: str) -> RunConfig:
        source = self.workspace.config_file(path, write=False) if self.workspace else _plain_path(path)
        return RunConfig.from_yaml(source)  # its paths are checked when it is used

    def dataset_names(self, dataset_dir: str) -> list[str]:
        """Names in the folder's registry; empty when it has none (the preview says why)."""
        registry = self._registry(dataset_dir)
        return sorted(registry) if registry is not None else []

    def dataset_stages(self, dataset_dir: str) -> dict[str, str]:
        """The training stage each usable dataset of the folder's registry is for (sft, dpo, kto or pt)."""
        from studio.data.prepare import STAGE_KINDS

        stage_of = {kind: stage for stage, kind in STAGE_KINDS.items()}
        registry = self._registry(dataset_dir)
        specs = registry.specs.items() if registry is not None else ()
        return {name: stage_of[spec.kind] for name, spec in specs if spec.unsupported() is None}

    def _registry(self, dataset_dir: str) -> Registry | None:
        """The folder's registry (from the page: a folder in the workspace), or None when there is none to read."""
        from studio.data.registry import load_registry
        from studio.paths import resolve_dataset_dir

        try:
            folder = resolve_dataset_dir(dataset_dir, self.workspace.root if self.workspace else None)
            if self.workspace:
                folder = self.workspace.path(folder, "data.dataset_dir")
            return load_registry(folder)
        except StudioError:
            return None

    def preview(
        self, config: RunConfig, rows: int = 10, tokens: bool = True, progress: Callable = lambda report: None
    ) -> tuple[Preview, Message | None]:
        """(Preview, note): token statistics when the model's tokenizer loads, else the rows alone and why.

        `progress` receives PreviewProgress reports: 'tokenizer' while the tokenizer loads (a first use of the
        embedded model converts it, about a minute), then 'reading' and 'tokenizing' per dataset.
        """
        from studio.data.picture_tokens import PictureEncoder
        from studio.data.preview import PreviewProgress, preview_datasets

        if self.workspace:
            self.workspace.check_dataset_files(config.data.dataset_dir, config.data.datasets)
            self.workspace.check_model(config.model.name_or_path, config.model.trust_remote_code)
        stage, hub = config.training.stage, config.model.hub
        if not tokens:
            return preview_datasets(config.data, rows=rows, progress=progress, stage=stage, hub=hub), None
        progress(PreviewProgress("tokenizer", config.model.name_or_path, 0, 0))
        try:
            tokenizer = _tokenizer(
                config.model.name_or_path, config.model.chat_template, config.model.trust_remote_code, config.model.hub
            )
        except StudioError as error:  # the rows are still worth showing without token counts
            note = say("api.token_lengths_unavailable", error=error)
            return preview_datasets(config.data, rows=rows, progress=progress, stage=stage, hub=hub), note
        # a vision-language model counts its pictures, its image processor kept as the tokenizer is
        pictures = PictureEncoder.for_model(tokenizer, config.model, load=_picture_processor)
        preview = preview_datasets(
            config.data, rows, tokenizer, progress, stage, hub, pictures, config.model.name_or_path
        )
        return preview, None

    @property
    def upload_limit_mib(self) -> int:
        from studio.data.register import MAX_UPLOAD_BYTES

        return MAX_UPLOAD_BYTES // 2**20

    def detect_dataset(self, uploaded: str) -> Proposal:
        """A proposal (format, column mapping, sample rows) for a file the page uploaded (Gradio's upload folder)."""
        from studio.data.register import detect

        return detect(uploaded)

    def register_dataset(self, dataset_dir: str, name: str, uploaded: str, entry: dict) -> DatasetSpec:
        """Store an uploaded file in the dataset folder and add its (confirmed) entry to the registry."""
        from studio.data.register import register

        return register(self._dataset_folder(dataset_dir), name, uploaded, entry).spec

    def register_hub_dataset(self, dataset_dir: str, name: str, hub_id: str) -> DatasetSpec:
        from studio.data.register import register_hub

        return register_hub(self._dataset_folder(dataset_dir), name, hub_id).spec

    def _dataset_folder(self, dataset_dir: str) -> Path:
        """The folder a new dataset goes to: created when missing; from the page, a writable place in the workspace."""
        from studio.paths import resolve_dataset_dir

        base = self.workspace.root if self.workspace else None
        folder = resolve_dataset_dir(dataset_dir, base)
        if self.workspace:
            folder = self.workspace.path(folder, "data.dataset_dir", write=True)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- adapters, chat, evaluation, export --------------------------------------------

    def adapters(self) -> AdapterScan:
        """AdapterScan: the finished runs' adapters, and why damaged ones were left out."""
        from studio.adapters import scan_adapters

        if len(self._adapters_read) > 4096:
            self._adapters_read.clear()
        return scan_adapters(self.runs_dir, self._adapters_read)

    def reward_models(self) -> list[str]:
        """The finished rm runs, newest first: what ppo.reward_model names."""
        return [adapter.name for adapter in self.adapters().adapters if adapter.reward_model]

    @property
    def engine(self) -> Engine:
        """The chat engine (one model in memory) Chat and the OpenAI endpoint answer with: the HF engine, shared with
        Evaluate, unless the model was loaded with chat.engine vllm or is a GGUF file (studio.chat.engines)."""
        if self._engine is None:
            from studio.chat import ChatEngine

            self._engine = ChatEngine()
        return self._engine

    def load_model(
        self,
        model: ModelConfig,
        quantization: QuantizationConfig,
        progress: Callable = lambda message: None,
        cutoff_len: int | None = None,
        whole_model: bool = False,
        chat: ChatConfig | None = None,
    ) -> str:
        """`cutoff_len`: the data.cutoff_len of the run whose adapters the model serves (model.rope_scaling);
        `whole_model`: the base serves a full or freeze run, whose tensors need it unquantised ('auto' is none);
        `chat`: which engine loads it (chat.engine, default hf), the other engine's model unloaded first. A path to
        a .gguf file (confined like any path) loads that file in llama.cpp, for Chat alone (studio.chat.gguf_engine,
        whatever chat.engine says but vllm)."""
        from studio.chat.engines import engine_for, is_gguf
        from studio.chat.whole_models import base_quantization
        from studio.control.validation import check_model

        # every check before engine_for, which unloads the other engine's model: a refused path leaves it loaded
        if is_gguf(model.name_or_path):  # a file, confined like any path, that llama.cpp opens (gguf_engine)
            from studio.chat.gguf_engine import check_gguf

            path = self._readable(model.name_or_path, "model.name_or_path")
            check_gguf(path)  # a mistyped name, or no llama-cpp-python: said while the loaded model stays
            model = model.model_copy(update={"name_or_path": str(path)})
        else:
            if self.workspace:
                self.workspace.check_model(model.name_or_path, model.trust_remote_code)
            check_model(model)
            quantization = base_quantization(quantization, whole_model)
        engine = self._engine = engine_for(self._engine, chat or ChatConfig(), model.name_or_path)
        return engine.load(model, quantization, progress=progress, cutoff_len=cutoff_len)

    def unload_model(self) -> str:
        return self.engine.unload()

    def load_adapter(self, path: str, name: str | None = None) -> AdapterInfo:
        """`name`: what Chat and the OpenAI-compatible API call it (default: its run's or folder's name)."""
        return self.engine.load_adapter(str(self._readable(path, say("api.adapter_folder"))), name)

    @property
    def openai_endpoint(self) -> OpenAIEndpoint:
        """The OpenAI-compatible API (studio.openai_api) answering with the chat engine: off until switched on."""
        if self._openai is None:
            from studio.openai_api import OpenAIEndpoint

            self._openai = OpenAIEndpoint(lambda: self.engine)
        return self._openai

    def unload_adapter(self, name: str) -> None:
        self.engine.unload_adapter(name)

    def combine_adapters(
        self, name: str, weights: dict[str, float], combination_type: str = "linear", density: float | None = None
    ) -> AdapterInfo:
        """A weighted combination of loaded LoRA adapters (by name), loaded in Chat as adapter `name`
        (studio.combinations); its recipe in `engine.combinations`."""
        return self.engine.combine(name, weights, combination_type, density)

    @property
    def combinations(self) -> dict[str, Combination]:
        """The weighted combinations loaded in Chat, by name (none before Chat loaded anything)."""
        return self._engine.combinations if self._engine is not None else {}

    def combination(
        self,
        folders: list[tuple[str, float]],
        combination_type: str = "linear",
        density: float | None = None,
        name: str = "combination",
    ) -> Combination:
        """A checked recipe of adapter folders and their weights, for `export`; a combination loaded in Chat
        has one already (`engine.combinations`)."""
        from studio.adapters import read_adapter
        from studio.combinations import combination_of

        infos = [read_adapter(self._readable(folder, say("api.adapter_folder"))) for folder, _ in folders]
        return combination_of(name, infos, [weight for _, weight in folders], combination_type, density)

    def stream(
        self,
        conversations: list[list[dict]],
        adapters: list[str | None],
        generation: GenerationConfig,
        stop: threading.Event | None = None,
        *,
        tools: str | list | None = None,
        thinking: bool | None = None,
        pictures: list[list[Picture]] | None = None,
    ) -> Generator[list[Answer], None, None]:
        """Answers streamed side by side; `tools`, `thinking` and `pictures` as ChatEngine.stream takes them."""
        return self.engine.stream(
            conversations, adapters, generation, stop, tools=tools, thinking=thinking, pictures=pictures
        )

    def evaluate(
        self, config: RunConfig, adapter_path: str | None, compare: bool, progress: Callable = lambda event: None
    ) -> EvalReport:
        from studio.evaluation.runner import evaluate

        self._check_config(config)
        adapter = str(self._readable(adapter_path, say("api.adapter_folder"))) if adapter_path else None
        # the HF engine asked for once the runner's cheap checks pass: a GGUF file in Chat gives way only then
        return evaluate(self._hf_engine, config, adapter, compare, progress=progress, may_write=self._writable)

    def _hf_engine(self) -> ChatEngine:
        """The HF engine, for what only it does (Evaluate, reward scores; studio.chat.engines.hf_engine)."""
        from studio.chat.engines import hf_engine

        engine = self._engine = hf_engine(self._engine)
        return engine

    def benchmark_names(self) -> list[str]:
        """The benchmarks shipped with the studio (data/benchmarks), offered first in the Evaluate tab; any other
        task lm-eval knows may be typed in."""
        from studio.evaluation.benchmarks import bundled_tasks

        return bundled_tasks()

    def score_text(self, config: RunConfig, adapter_path: str, prompt: str, answer: str) -> float:
        """A reward model's score of `answer` to `prompt` (the page's score box): the run's base model and the
        adapter are loaded first when they are not."""
        from studio.adapters import AdapterError, read_adapter
        from studio.chat import ChatEngine
        from studio.chat.engines import check_hf

        if not adapter_path:
            raise AdapterError("api.choose_reward_model")
        if not prompt.strip() or not answer.strip():
            raise AdapterError("api.score_needs_prompt_and_answer")
        self._check_config(config)
        adapter = str(self._readable(adapter_path, say("api.adapter_folder")))
        read_adapter(adapter)  # a folder that is no adapter is refused before anything gives way
        held = self._engine
        if not isinstance(held, ChatEngine) or not held.loaded or held.model_name != config.model.name_or_path:
            check_hf(held)  # vLLM holding Chat's model is refused, not unloaded
            # its own checks first: the model in Chat (a GGUF file, another model) gives way only once they pass
            self.load_model(config.model, config.quantization, cutoff_len=config.data.cutoff_len)
        engine = self._hf_engine()
        name = engine.load_adapter(adapter).name
        return engine.score_text([{"role": "user", "content": prompt}], answer, name)

    def export(
        self,
        config: RunConfig,
        adapter_path: str,
        progress: Callable = lambda message: None,
        combination: Combination | None = None,
    ) -> ExportReport | GgufReport:
        """ExportReport (safetensors folder) or GgufReport (export.format gguf); progress gets Message lines
        and, while a GGUF is written, WriteProgress per tensor. `combination` (see `combination`) is merged
        instead of `adapter_path`, and so is a combination loaded in Chat that `adapter_path` names."""
        from studio.export.merge import ExportError, export_merged

        if combination is None and self._engine is not None:
            combination = self._engine.combinations.get(adapter_path)
        if combination is not None:
            adapter_path = combination.parts[0].path
        if not adapter_path:
            raise ExportError("api.choose_adapter_to_export")
        self._check_config(config)
        adapter = str(self._readable(adapter_path, say("api.adapter_folder")))
        if config.export.format == "gguf":
            from studio.export.gguf_export import export_gguf

            return export_gguf(config, adapter, progress=progress, combination=combination)
        return export_merged(config, adapter, progress=progress, combination=combination)

    def hub_unreachable(self) -> Message | None:
        """Why uploading to the Hugging Face Hub cannot work from this machine (a Message), or None."""
        from studio.export.hub import unreachable_reason

        return unreachable_reason()

    def push_to_hub(
        self,
        folder: str,
        repo_id: str,
        token: str | None = None,
        private: bool = True,
        progress: Callable = lambda message: None,
    ) -> PushReport:
        """Upload a run's adapter or whole model (with a generated model card) or an export folder to a model repo;
        PushReport.

        `token` is used for this call only (None: HF_TOKEN or the saved login) and is never stored or logged."""
        from studio.adapters import read_adapter
        from studio.export.hub import HubError, check_repo_id, plan_upload, push
        from studio.export.model_card import adapter_card

        if not folder:
            raise HubError("api.choose_what_to_upload")
        repo_id = check_repo_id(repo_id)
        path = self._readable(folder, say("api.folder_to_upload"))
        trained = (path / "adapter_config.json").is_file() or (path / "studio_config.yaml").is_file()
        card = adapter_card(read_adapter(path), repo_id) if trained else None  # an export folder has its own
        return push(plan_upload(path, card), repo_id, token, private, progress)

    # -- internals ------------------------------------------------------------------

    def _check_config(self, config: RunConfig) -> None:
        if self.workspace:
            self.workspace.check_config(config)

    def _writable(self, path: Path) -> bool:
        try:
            return self.workspace is None or bool(self.workspace.path(path, "", write=True))
        except PathNotAllowed:
            return False

    def _readable(self, raw: str, what: str) -> Path:
        return self.workspace.path(raw, what) if self.workspace else Path(raw).expanduser()


def _plain_path(raw: str) -> Path:
    if not raw or not raw.strip():
        raise StudioError("workspace.config_path_missing")
    return Path(raw.strip()).expanduser()


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str, chat_template: ChatTemplate, trust_remote_code: bool, hub: Hub = "huggingface"):
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.sources import resolve_model_path

    model = ModelConfig(
        name_or_path=name_or_path, chat_template=chat_template, trust_remote_code=trust_remote_code, hub=hub
    )
    return load_tokenizer(model, resolve_model_path(model, progress=lambda _: None))


@functools.lru_cache(maxsize=4)
def _picture_processor(path: str, trust_remote_code: bool, min_pixels: int, max_pixels: int) -> PictureProcessor | None:
    """The image processor of the vision-language model in `path` (None for a text model), loaded once per model as
    its tokenizer is (`_tokenizer`): the preview asks again at every change."""
    from studio.modeling.vision import PictureProcessor

    return PictureProcessor.load(path, trust_remote_code, min_pixels, max_pixels)


def _smallest_gpu_gib(gpus: tuple[int, ...]) -> float | None:
    import torch

    if not gpus or not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(index).total_memory for index in gpus) / 2**30


def _import_model_libraries() -> None:
    """Import what the page's handlers use, once, in this thread. transformers resolves its names lazily, and two
    handler threads resolving them at the same moment can fail one with "cannot import name 'AutoTokenizer' from
    'transformers'" (seen when a dataset preview met another handler's first import)."""
    import peft  # noqa: F401 (imported for its side effect: loaded before any handler thread)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401
