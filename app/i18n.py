"""UI text in English and Chinese. Config-field labels come from the config models themselves."""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = {"English": "en", "中文": "zh"}


@dataclass(frozen=True)
class Text:
    en: str
    zh: str

    def __call__(self, lang: str, **values) -> str:
        text = self.zh if lang == "zh" else self.en
        return text.format(**values) if values else text

    def filled(self, **values) -> Text:
        """The same text with its placeholders filled, in both languages (for Labels, which switch languages)."""
        return Text(self.en.format(**values), self.zh.format(**values))


def named(prefix: str, name: str, lang: str) -> str:
    """T.<prefix>_<name> in `lang`, or the name itself when the table has no entry (a new state, a new phase)."""
    text = getattr(T, f"{prefix}_{name}", None)
    return text(lang) if isinstance(text, Text) else name


class T:
    """Every fixed UI string, as attributes so a typo fails at import rather than showing a key."""

    title = Text("QLoRA Studio", "QLoRA Studio 微调工作室")
    subtitle = Text(
        "Fine-tune a chat model with QLoRA, watch it learn, compare it with the base model.",
        "用 QLoRA 微调对话模型，实时观察训练过程，并与基座模型对比。",
    )
    language = Text("Language", "语言")
    tab_train = Text("Train", "训练")
    tab_eval = Text("Evaluate & Predict", "评估与预测")
    tab_chat = Text("Chat", "对话")
    tab_export = Text("Export", "导出")
    method = Text("Method", "微调方法")
    preview_dataset = Text("Preview dataset", "预览数据集")
    preview_command = Text("Preview command", "预览命令")
    save_config = Text("Save config", "保存配置")
    load_config = Text("Load config", "加载配置")
    config_path = Text("Config file", "配置文件路径")
    start = Text("Start", "开始训练")
    abort = Text("Abort", "中止")
    resume = Text("Resume", "继续训练")
    runs = Text("Runs", "训练记录")
    refresh = Text("Refresh", "刷新")
    progress = Text("Progress", "进度")
    logs = Text("Log", "日志")
    loss_chart = Text("Loss", "损失")
    lr_chart = Text("Learning rate", "学习率")
    memory_chart = Text("GPU memory", "显存")
    common = Text("Common settings", "常用参数")
    section_lora = Text("LoRA", "LoRA 参数")
    section_quantization = Text("Quantisation", "量化参数")
    section_data = Text("Data", "数据参数")
    section_training = Text("Training", "训练参数")
    section_model = Text("Model", "模型参数")
    section_preference = Text("Preference (DPO / KTO)", "偏好训练（DPO / KTO）")
    section_distributed = Text("Several devices and nodes (torchrun)", "多设备与多节点（torchrun）")
    devices = Text("Devices of this machine", "本机设备")
    devices_info = Text(
        "Tick the devices to train on (one process each on GPUs); this fills training.devices. Nothing ticked: auto.",
        "勾选用于训练的设备（每块 GPU 一个进程），勾选结果会填入 training.devices；不勾选则为 auto。",
    )
    queue = Text("Queue it", "加入队列")
    queue_offer = Text(
        "Press “Queue it” to let this run wait: it starts by itself when its devices are free, even with no page open.",
        "点击“加入队列”让本次训练排队等待：设备空闲时会自动开始，即使没有打开页面。",
    )
    queued_run = Text("Queued run", "已加入队列")
    queue_place = Text("Queued: #{position} in line", "排队中：第 {position} 位")
    other_nodes = Text("Run on each other node", "在其他每个节点上运行")
    no_run = Text(
        "No run selected. Press Start to train, or open a run from the list.",
        "尚未选择训练。点击“开始训练”，或从列表中打开一次训练。",
    )
    no_gpu = Text(
        "No GPU on this machine: the chart shows the worker's resident memory (RSS) instead.",
        "本机没有 GPU：图中显示的是训练进程的内存占用（RSS）。",
    )
    started_run = Text("Started run", "已开始训练")
    abort_sent = Text("Asked the run to save a checkpoint and stop.", "已请求保存检查点并停止训练。")
    abort_cancelled = Text(
        "Cancelled: the queued run left the queue without starting.", "已取消：排队中的训练未启动即离开队列。"
    )
    abort_ended = Text("This run has already ended.", "这次训练已经结束。")
    saved = Text("Saved", "已保存")
    loaded = Text("Loaded", "已加载")
    rows = Text("rows", "条")
    steps = Text("step", "步")
    elapsed = Text("elapsed", "已用")
    eta = Text("remaining", "剩余")
    error = Text("Error", "错误")
    load_model = Text("Load model", "加载模型")
    unload_model = Text("Unload model", "卸载模型")
    model_status_none = Text(
        "No model loaded. The model, method and template come from the top bar.",
        "尚未加载模型。模型、方法与模板取自顶部栏。",
    )
    adapter = Text("Adapter", "适配器")
    adapter_path = Text("Or an adapter folder", "或填写适配器目录")
    load_adapter = Text("Load adapter", "加载适配器")
    unload_adapter = Text("Unload adapter", "卸载适配器")
    chat_mode = Text("Answer with", "回答方式")
    mode_compare = Text("Base vs adapter", "基座 vs 适配器")
    mode_base = Text("Base only", "仅基座")
    mode_adapter = Text("Adapter only", "仅适配器")
    base_column = Text("Base model", "基座模型")
    adapter_column = Text("Adapter", "适配器")
    message = Text("Message", "消息")
    send = Text("Send", "发送")
    stop = Text("Stop", "停止")
    clear = Text("Clear history", "清空历史")
    generation = Text("Generation settings", "生成参数")
    loading = Text("Loading…", "加载中…")
    compare_base = Text("Also score the base model (side by side)", "同时评估基座模型（并排对比）")
    start_eval = Text("Start evaluation", "开始评估")
    eval_note = Text(
        "Empty datasets = the run's own validation split. Predictions are greedy (reproducible); max new tokens and "
        "the system prompt come from the Chat tab's generation settings.",
        "评估数据集留空即使用该训练的验证集。预测采用贪心解码（结果可复现）；最大生成长度与系统提示词取自“对话”页的生成参数。",
    )
    metrics = Text("Metrics", "指标")
    samples = Text("Samples", "样本")
    export = Text("Export", "导出")
    recipe_filled = Text("Filled in", "已填入")
    recipe_kept = Text("Kept the values you changed: {fields}.", "保留了你修改过的值：{fields}。")
    recipe_datasets_replaced = Text(
        "The datasets chosen before cannot train stage {stage}: chose {datasets} instead.",
        "之前选择的数据集不能用于 {stage} 阶段训练，已改为 {datasets}。",
    )
    # adding a dataset from the browser
    add_dataset = Text("Add a dataset", "添加数据集")
    add_dataset_note = Text(
        "Upload a json, jsonl, csv, parquet or txt file (at most {limit} MiB). The studio proposes its format and "
        "column "
        "mapping as a dataset_info.json entry: check or edit it, name the dataset, then register it. It is stored in "
        "the "
        "dataset folder above, and preview shows it at once.",
        "上传 json、jsonl、csv、parquet 或 txt 文件（不超过 {limit} MiB）。工作室会推测其格式与列映射，生成 "
        "dataset_info.json "
        "条目：请检查或修改，填写数据集名称后注册。文件会保存到上方的数据目录，并立即预览。",
    )
    upload_file = Text("Choose a data file…", "选择数据文件…")
    dataset_name = Text("Dataset name", "数据集名称")
    dataset_entry = Text("Entry for dataset_info.json", "dataset_info.json 条目")
    register_dataset = Text("Register and preview", "注册并预览")
    hub_dataset = Text("Or a Hugging Face dataset id", "或 Hugging Face 数据集 ID")
    register_hub = Text("Register hub dataset", "注册 Hub 数据集")
    detected = Text(
        "Detected **{format}** data: {rows} rows; columns: {columns}.",
        "识别为 **{format}** 数据：{rows} 行；列：{columns}。",
    )
    upload_first = Text("Upload a data file first.", "请先上传数据文件。")
    registered = Text("Registered **{name}**.", "已注册 **{name}**。")
    # run states and phases, as the progress box shows them
    state_queued = Text("queued", "排队中")
    state_starting = Text("starting", "启动中")
    state_running = Text("running", "训练中")
    state_finished = Text("finished", "已完成")
    state_failed = Text("failed", "失败")
    state_aborted = Text("aborted", "已中止")
    state_cancelled = Text("cancelled", "已取消")
    state_unreadable = Text("unreadable", "无法读取")
    state_missing = Text("missing", "不存在")
    phase_loading_model = Text("loading the model", "加载模型")
    phase_loading_data = Text("reading the data", "读取数据")
    phase_tokenizing = Text("tokenising", "分词")
    phase_reference = Text("reference log-probabilities", "计算参考模型对数概率")
    phase_training = Text("training", "训练")
    phase_saving = Text("saving", "保存")
    # charts
    axis_step = Text("step", "步数")
    axis_seconds = Text("seconds", "秒")
    axis_tokens = Text("tokens", "token 数")
    axis_examples = Text("examples", "样本数")
    trace_loss = Text("loss", "训练损失")
    trace_smoothed = Text("loss (smoothed)", "训练损失（平滑）")
    trace_eval = Text("eval loss", "验证损失")
    trace_train_split = Text("train", "训练")
    trace_eval_split = Text("eval", "验证")
    trace_lr = Text("learning rate", "学习率")
    trace_rss = Text("worker RSS", "训练进程内存")
    trace_gpu_used = Text("used", "已用")
    trace_gpu_total = Text("total", "总量")
    rss_chart = Text("Memory (RSS)", "内存（RSS）")
    tokens_chart = Text("Token length per example", "每条样本的 token 长度")
    waiting_first_step = Text("Waiting for the first step…", "等待第一步完成……")
    rewards_chart = Text("Rewards", "奖励")
    margin_chart = Text("Reward margin and accuracy", "奖励差值与准确率")
    axis_reward = Text("reward", "奖励")
    axis_margin = Text("margin", "差值")
    axis_accuracy = Text("accuracy", "准确率")
    trace_rewards_chosen = Text("chosen", "选中回答")
    trace_rewards_rejected = Text("rejected", "拒绝回答")
    trace_margin = Text("margin", "差值")
    trace_accuracy = Text("accuracy", "准确率")
    split_train = Text("train", "训练")
    split_eval = Text("eval", "验证")
    # chat
    adapter_loaded = Text(
        "Adapter {name} loaded onto {model} (loaded adapters: {all}).",
        "适配器 {name} 已加载到 {model}（已加载的适配器：{all}）。",
    )
    adapter_unloaded = Text("Adapter {name} unloaded.", "适配器 {name} 已卸载。")
    adapter_not_loaded = Text("That adapter is not loaded.", "该适配器尚未加载。")
    answer_speed = Text("{tokens} tokens · {rate:.1f} tok/s", "{tokens} 个 token · {rate:.1f} token/秒")
    # evaluate and export
    stage_loss = Text("eval loss", "计算验证损失")
    stage_predict = Text("predicting", "生成预测")
    stage_done = Text("done", "完成")
    samples_done = Text("{count} samples · results in", "{count} 条样本 · 结果保存在")
    col_metric = Text("metric", "指标")
    col_difference = Text("difference", "差值")
    col_prompt = Text("prompt", "提示")
    col_reference = Text("reference", "参考答案")
    col_prediction = Text("{column} prediction", "{column} 预测")
    col_text = Text("text", "文本")
    eval_kind_pairwise = Text(
        "Preference pairs: accuracy and margin of the rewards, predictions scored against the chosen answers.",
        "偏好对：奖励的准确率与差值，预测结果与选中回答比对评分。",
    )
    eval_kind_kto = Text(
        "KTO feedback: accuracy is the share of answers whose reward has the right sign; predictions scored against "
        "the desirable answers.",
        "KTO 反馈：准确率为奖励符号正确（期望回答为正、非期望回答为负）的回答所占比例；预测结果与期望回答比对评分。",
    )
    eval_kind_text = Text(
        "Plain text: perplexity of the held-out text (no predictions).", "纯文本：验证文本的困惑度（不生成预测）。"
    )
    base = Text("base", "基座")
    export_running = Text("running", "进行中")
    export_done = Text("Exported to {path} ({dtype}, {seconds} s)", "已导出到 {path}（{dtype}，{seconds} 秒）")
    export_check = Text(
        "reload check: max logit difference {diff:.3g} ≤ tolerance {tolerance:g} ✓",
        "重新加载校验：logits 最大差 {diff:.3g} ≤ 容差 {tolerance:g} ✓",
    )
    export_files = Text("Files", "文件")
    # preview
    preview_tokens = Text(
        "tokens: median {median:.0f}, p95 {p95}, max {max}; {over} longer than cutoff_len",
        "token 数：中位数 {median:.0f}，p95 {p95}，最大 {max}；{over} 条超过截断长度",
    )
    preview_skipped = Text("skipped", "已跳过")
    preview_parts = Text(
        "prompt median {prompt}, chosen median {chosen}, rejected median {rejected} tokens",
        "提示中位数 {prompt}、选中回答中位数 {chosen}、拒绝回答中位数 {rejected} 个 token",
    )
    preview_stage_problem = Text("Start would refuse it", "开始训练时会被拒绝")
    preview_tokenizer = Text("Loading the tokenizer of", "正在加载分词器：")
    preview_reading = Text("Reading", "正在读取")
    preview_tokenizing = Text("Counting tokens of", "正在统计 token：")
    kind_sft = Text("instructions", "指令数据")
    kind_pairwise = Text("preference pairs", "偏好对")
    kind_kto = Text("feedback", "KTO 反馈")
    kind_text = Text("plain text", "纯文本")
    checkpoint = Text("Checkpoint to resume from", "从哪个检查点继续")
    latest_checkpoint = Text("newest that loads", "最新可用的检查点")
    resumed_from = Text("resumed", "已继续")
    resumed_run = Text("Resumed run", "已继续训练")
    bug = Text("Unexpected error (a bug in QLoRA Studio)", "意外错误（QLoRA Studio 的程序缺陷）")
    bug_hint = Text(
        "The traceback is in the server's log (the terminal running qlora-studio webui); please report it.",
        "完整的错误信息在服务端日志中（运行 qlora-studio webui 的终端），请反馈此问题。",
    )
    not_set = Text("empty = not set", "留空即不设置")
    choose_adapter = Text(
        "Choose an adapter (the list holds every finished run's) or type its folder.",
        "请选择适配器（列表包含所有已完成训练的适配器）或填写其目录。",
    )
    compare_needs_adapter = Text(
        "“Also score the base model” compares base and adapter: choose an adapter first, or untick it to score the "
        "base alone.",
        "“同时评估基座模型”用于对比基座与适配器：请先选择适配器，或取消勾选以仅评估基座模型。",
    )
    damaged_adapters = Text("Left out of the adapter list", "未列入适配器列表")
    export_note = Text(
        "Merges the adapter into the base loaded in 16-bit (fp32 on CPU, never 4-bit), saves safetensors shards, "
        "tokenizer, chat template and a model card, then reloads the folder and checks its logits against "
        "base+adapter. "
        "Format gguf writes one .gguf file (tokenizer and chat template inside) and an Ollama Modelfile for llama.cpp, "
        "Ollama or LM Studio, reloads it with transformers' GGUF reader and shows how far its logits are from the "
        "merged model.",
        "将适配器合并进以 16 位加载的基座（CPU 上为 fp32，绝不合并进 4 位权重），保存 safetensors 分片、分词器、对话模"
        "板与模型卡，"
        "随后重新加载并与“基座+适配器”的 logits 比对校验。导出格式选 gguf 时写出单个 .gguf 文件（内含分词器与对话模板"
        "）及 Ollama "
        "Modelfile，可用于 llama.cpp、Ollama 或 LM Studio；随后用 transformers 的 GGUF 读取器重新加载，并显示其 "
        "logits 与合并后模型的差距。",
    )
    export_gguf_done = Text(
        "Wrote {file} ({type}, {size:.1f} MiB, {seconds} s)", "已写出 {file}（{type}，{size:.1f} MiB，{seconds} 秒）"
    )
    export_gguf_check = Text(
        "reload check with transformers' GGUF reader: max logit difference {diff:.3g} from the merged model; expected "
        "from "
        "{type} rounding alone: {expected:.3g}; same next token at {agreement:.1%} of positions",
        "用 transformers 的 GGUF 读取器重新加载校验：与合并后模型的 logits 最大差 {diff:.3g}；其中 {type} 舍入本身预期"
        "带来 "
        "{expected:.3g}；{agreement:.1%} 的位置预测的下一个 token 相同",
    )
    export_gguf_exact = Text(
        "file vs the merged weights rounded as {type}: {check:.2g} ≤ {tolerance:g} ✓ · tokenizer and chat template "
        "read back equal ✓",
        "文件与按 {type} 舍入的合并权重相比：{check:.2g} ≤ {tolerance:g} ✓ · 分词器与对话模板读回一致 ✓",
    )
    # upload to the Hugging Face Hub (Export tab)
    hub_title = Text("Upload to the Hugging Face Hub", "上传到 Hugging Face")
    hub_what = Text("What to upload", "上传内容")
    hub_adapter = Text("the adapter chosen above", "上方选择的适配器")
    hub_export = Text("the export folder", "导出目录")
    hub_repo = Text("Repo (owner/name)", "仓库（用户名/仓库名）")
    hub_token = Text(
        "Token: used for this upload only, never saved or logged; empty = HF_TOKEN or the saved login",
        "访问令牌：仅用于本次上传，不保存、不记录；留空则使用 HF_TOKEN 或已保存的登录",
    )
    hub_private = Text("Private repo", "私有仓库")
    hub_push = Text("Upload", "上传")
    hub_done = Text("Uploaded {count} files to {url}", "已上传 {count} 个文件到 {url}")
    # Compare tab
    tab_compare = Text("Compare runs", "运行对比")
    compare_note = Text(
        "Tick runs to overlay their curves and see the settings that differ. In the table, “open in Chat” or “open in "
        "Evaluate” puts that run's adapter in the tab and switches to it.",
        "勾选多个训练，叠加查看曲线并比较不同的设置。在表格中点击“在对话中打开”或“在评估中打开”，即可在对应页选中该训练的适配器并切换过去。",
    )
    compare_runs = Text("Runs to compare", "要对比的训练")
    compare_axis = Text("Horizontal axis", "横轴")
    compare_pick = Text("Tick one or more runs above to compare them.", "请在上方勾选一个或多个训练进行对比。")
    compare_table = Text("Runs side by side", "训练对比表")
    compare_extra_chart = Text("Other metrics", "其他指标")
    compare_col_run = Text("run", "训练")
    compare_col_state = Text("state", "状态")
    compare_col_model = Text("model", "模型")
    compare_col_datasets = Text("datasets", "数据集")
    compare_col_best_eval = Text("best eval loss @ step", "最佳验证损失 @ 步数")
    compare_col_training_reward_accuracy = Text("reward accuracy (training)", "奖励准确率（训练中）")
    compare_col_training_reward_margin = Text("reward margin (training)", "奖励差值（训练中）")
    compare_col_duration = Text("duration", "用时")
    compare_col_tokens_per_second = Text("tokens/s", "token/秒")
    compare_col_peak_memory = Text("peak memory", "峰值内存")
    compare_col_problem = Text("note", "说明")
    compare_col_open = Text("Chat", "对话")
    compare_col_open_eval = Text("Evaluate", "评估")
    compare_in_chat = Text("open in Chat", "在对话中打开")
    compare_in_eval = Text("open in Evaluate", "在评估中打开")
    compare_opened = Text("The adapter of {run} is chosen there now.", "已在该页选中训练 {run} 的适配器。")


class Labels:
    """Components whose fixed text follows the language switch: (component, text, attribute)."""

    def __init__(self):
        self.entries: list[tuple[object, object, str]] = []

    def add(self, component, text: Text, attribute: str = "label"):
        self.entries.append((component, text, attribute))
        return component

    def add_choices(self, component, choices: list[tuple[Text, str]]):
        """A radio or dropdown whose choice labels follow the language; values stay fixed."""
        self.entries.append((component, choices, "choices"))
        return component

    @property
    def components(self) -> list:
        return list(dict.fromkeys(component for component, _, _ in self.entries))

    def updates(self, lang: str) -> dict:
        """{component: gr.update(...)} with every text attribute of each component in `lang`."""
        import gradio as gr

        changes: dict = {}
        for component, text, attribute in self.entries:
            value = [(label(lang), v) for label, v in text] if attribute == "choices" else text(lang)
            changes.setdefault(component, {})[attribute] = value
        return {component: gr.update(**kwargs) for component, kwargs in changes.items()}
