"""The folded history of a run: a resumed attempt replaces the steps after its checkpoint."""

from studio.runs.events import AttemptStarted, Eval, Phase, Started, Step
from studio.runs.history import HistoryCache, RunHistory


def _step(n, loss):
    return Step(
        step=n,
        total_steps=10,
        epoch=n / 10,
        loss=loss,
        learning_rate=1e-4,
        grad_norm=1.0,
        tokens_per_second=100.0,
        elapsed_s=n,
        eta_s=None,
        rss_mib=500,
    )


def _started(attempt, start_step):
    return Started(
        attempt=attempt,
        pid=1,
        device="cpu",
        method="LoRA",
        dtype="float32",
        trainable_params=1,
        total_params=2,
        train_examples=10,
        val_examples=1,
        truncated_examples=0,
        dropped_examples=0,
        total_steps=10,
        start_step=start_step,
    )


def test_a_resumed_attempt_replaces_the_steps_after_its_checkpoint():
    first = [AttemptStarted(attempt=1), Phase(name="loading_model"), _started(1, 0)]
    first += [_step(n, 3.0 - n / 10) for n in range(1, 8)]
    first.append(Eval(step=6, epoch=0.6, eval_loss=2.5, best_eval_loss=2.5, patience_left=3))
    resumed = [AttemptStarted(attempt=2, start_step=5, resumed_from="checkpoint-5"), Phase(name="loading_model")]
    history = RunHistory("r").update(first + resumed, 1)
    assert history.loss.x == [1, 2, 3, 4, 5] and history.resumed_at == [5]  # cut as soon as the resume begins
    history.update([_started(2, 5)] + [_step(n, 2.0 - n / 10) for n in range(6, 9)], 2)
    assert history.loss.x == [1, 2, 3, 4, 5, 6, 7, 8]  # each step once, in order: no line doubling back
    assert history.loss.y[5:] == [2.0 - 0.6, 2.0 - 0.7, 2.0 - 0.8]
    assert history.eval_loss.x == []


def test_the_cache_folds_each_event_once_and_hands_out_snapshots():
    reads = []
    events = [_step(1, 3.0), _step(2, 2.9)]

    def read(run_id, offset):
        reads.append(offset)
        return (events[offset:], len(events)) if offset < len(events) else ([], offset)

    cache = HistoryCache(read)
    first = cache.get("r")
    assert first.loss.x == [1, 2] and cache.get("r") is first  # nothing new: the same snapshot
    events.append(_step(3, 2.8))
    second = cache.get("r")
    assert second.loss.x == [1, 2, 3] and first.loss.x == [1, 2] and reads == [0, 2, 2]


def _preference(step, split, margin, accuracy):
    from studio.runs.events import Preference

    return Preference(
        step=step,
        split=split,
        rewards_chosen=margin / 2,
        rewards_rejected=-margin / 2,
        reward_margin=margin,
        reward_accuracy=accuracy,
    )


def test_preference_metrics_are_series_per_split_and_a_resume_cuts_them_too():
    from studio.runs.text import describe

    started = _started(1, 0).model_copy(update={"stage": "dpo"})
    events = [AttemptStarted(attempt=1), started] + [_preference(n, "train", n / 10, 0.5 + n / 20) for n in range(1, 7)]
    events.append(_preference(6, "eval", 0.4, 0.75))
    history = RunHistory("r").update(events, 1)
    assert history.stage == "dpo" and history.has_preference
    assert history.preference["train"]["reward_margin"].x == [1, 2, 3, 4, 5, 6]
    assert history.preference["eval"]["reward_accuracy"].y == [0.75] and "kl" not in history.preference["train"]
    assert "margin +0.4000  accuracy 75%" in describe(events[-1])
    history.update([AttemptStarted(attempt=2, start_step=4, resumed_from="checkpoint-4")], 2)
    assert (
        history.preference["train"]["reward_margin"].x == [1, 2, 3, 4]
        and history.preference["eval"]["reward_margin"].x == []
    )
    assert not RunHistory("sft").update([_started(1, 0)], 1).has_preference


def test_a_started_run_says_its_method_in_each_language_from_new_and_old_folders():
    """The method is a Message in the cached snapshot (which is a deep copy): from the table where the event names
    its key, from the two texts an older folder stored, and English alone from the oldest."""
    from studio.locales import say

    said = say("modeling.method_lora", weights="float32", device="CPU")
    new = _started(1, 0).model_copy(update={"method": str(said), "method_key": said.key, "method_args": said.args})
    old = _started(1, 0).model_copy(update={"method": "LoRA (old)", "method_zh": "LoRA（旧）"})
    oldest = _started(1, 0).model_copy(update={"method": "LoRA (oldest)"})
    for event, english, chinese in [
        (new, str(said), said.text("zh")),
        (old, "LoRA (old)", "LoRA（旧）"),
        (oldest, "LoRA (oldest)", "LoRA (oldest)"),
    ]:
        cache = HistoryCache(lambda run_id, offset, event=event: ([event], 1) if offset == 0 else ([], offset))
        method = cache.get("r").method
        assert (str(method), method.text("en"), method.text("zh")) == (english, english, chinese)
    assert said.text("zh") != str(said)


def test_rewards_and_answers_of_a_grpo_run_are_folded_for_the_charts_and_table():
    from studio.runs.events import AnswerRow, Answers, Rewards
    from studio.runs.history import FUNCTION

    def rewards(step, split, mean):
        functions = {"accuracy": mean / 2, "format": 1.0}
        return Rewards(
            step=step,
            split=split,
            reward_mean=mean,
            reward_std=0.1,
            functions=functions,
            completion_length=20.0,
            ended=1.0,
            kl=0.01 if split == "train" else None,
            flat_groups=0.5 if split == "train" else None,
        )

    row = AnswerRow(prompt="1 + 1 = ?", answer="<answer>2</answer>", reference="2", reward=2.0, scores={"format": 1.0})
    history = RunHistory("grpo").update(
        [
            _started(1, 0).model_copy(update={"stage": "grpo"}),
            rewards(1, "train", 0.5),
            Answers(step=1, rows=[row]),
            rewards(2, "train", 1.0),
            rewards(2, "eval", 1.5),
            AttemptStarted(attempt=2, start_step=1),
        ],
        6,
    )
    assert history.has_rewards and not history.has_preference
    train = history.rewards["train"]
    assert train["reward_mean"].y == [0.5] and train[FUNCTION + "accuracy"].y == [0.25]  # the resume cut step 2
    assert "kl" in train and "kl" not in history.rewards["eval"]
    assert history.answers == [row] and history.answers_step == 1
    assert any(line.startswith("train step 1  reward +0.5000") for line in history.log)
