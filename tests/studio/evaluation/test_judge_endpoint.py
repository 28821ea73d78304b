"""The judge behind an OpenAI-compatible endpoint: verdicts from the server in both orders, prompts sent
concurrently, the served model found when none is named, errors that say what to do, no redirect followed, and
from the browser only the endpoints the server was started to allow."""

import pytest

from studio.api import Studio
from studio.chat.engine import ChatEngine
from studio.config import RunConfig
from studio.config.base import ConfigError
from studio.errors import PathNotAllowed, StudioError
from studio.evaluation.judge import judge
from studio.evaluation.judge_endpoint import endpoint_asker
from studio.evaluation.runner import evaluate
from studio.workspace import Workspace
from tests.support.openai_stub import MODEL, openai_stub

PROMPT = RunConfig().evaluation.judge_prompt


def _asker(url: str, model: str = "", concurrency: int = 4):
    return endpoint_asker(url, model, 16, concurrency, lambda done, total: None)


def test_the_endpoint_judges_both_orders_concurrently_with_the_model_it_serves():
    with openai_stub() as (url, seen):
        report = judge(
            _asker(url), ["q1", "q2", "q3"], ["r"] * 3, ["long answer", "x", "same"], ["y", "longer", "same"], PROMPT
        )
    assert [v.outcome for v in report.verdicts] == ["loss", "win", "tie"]
    assert report.verdicts[1].reason == "the longer answer says more | the longer answer says more"
    assert seen.models == [MODEL] * 6 and seen.most_in_flight > 1
    assert "/v1/models" in seen.paths


def test_the_key_comes_from_openai_api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    with openai_stub() as (url, seen):
        judge(_asker(url, MODEL), ["q"], ["r"], ["a"], ["b"], PROMPT)
    assert seen.keys == ["Bearer sk-test-key"] * 2 and "/v1/models" not in seen.paths  # named: nothing listed


def test_errors_say_what_to_do():
    with openai_stub(status=401) as (url, _):
        with pytest.raises(StudioError, match="answered 401.*OPENAI_API_KEY"):
            judge(_asker(url, MODEL), ["q"], ["r"], ["a"], ["b"], PROMPT)
    with openai_stub() as (url, _):
        pass  # the port is free again: nothing listens there
    with pytest.raises(StudioError, match="could not be reached.*judge_url"):
        judge(_asker(url, MODEL), ["q"], ["r"], ["a"], ["b"], PROMPT)


def test_a_redirect_is_not_followed():
    with openai_stub() as (url, seen):
        with pytest.raises(StudioError, match="answered 307"):
            judge(_asker(url.replace("/v1", "/moved"), MODEL), ["q"], ["r"], ["a"], ["b"], PROMPT)
    assert not any(path.startswith("/v1/") for path in seen.paths)


def test_the_judge_needs_an_http_url():
    for url in ("", "file:///etc/passwd", "127.0.0.1:8000/v1"):
        with pytest.raises(ConfigError, match="judge_url"):
            RunConfig().with_overrides({"evaluation.judge": "endpoint", "evaluation.judge_url": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/v1",  # another port
        "https://judge.example:8000/v1",  # another scheme
        "http://127.0.0.2:8000/v1",  # another host
        "http://127.0.0.1:8000/v2",  # beside, not under
        "http://127.0.0.1:8000/v1/../admin",
        "http://127.0.0.1:8000/v1/%2e%2e/admin",
        "http://user:pw@127.0.0.1:8000/v1",
        "http://127.0.0.1:8000:1/v1",
    ],
)
def test_the_browser_may_name_only_the_endpoints_the_server_allows(tmp_path, url):
    allowed = Workspace.serve(tmp_path, tmp_path / "runs", endpoints=("http://127.0.0.1:8000/v1/",))
    allowed.check_endpoint("http://127.0.0.1:8000/v1")
    allowed.check_endpoint("http://127.0.0.1:8000/v1/judges/big")
    with pytest.raises(PathNotAllowed, match="--judge-endpoint"):
        allowed.check_endpoint(url)


def test_evaluate_from_the_browser_refuses_an_endpoint_it_was_not_started_with(tmp_path):
    with openai_stub() as (url, seen):
        config = RunConfig().with_overrides({"evaluation.judge": "endpoint", "evaluation.judge_url": url})
        with pytest.raises(PathNotAllowed, match="--judge-endpoint"):
            Studio.serving(tmp_path, tmp_path / "runs").evaluate(config, None, False)
    assert seen.paths == []


def test_predict_with_an_endpoint_judge(tiny_model_dir, strong_adapter, tmp_path):
    with openai_stub() as (url, seen):
        config = RunConfig().with_overrides(
            {
                "model.name_or_path": str(tiny_model_dir),
                "quantization.method": "none",
                "evaluation.max_samples": "3",
                "evaluation.output_dir": str(tmp_path / "evals"),
                "evaluation.judge": "endpoint",
                "evaluation.judge_url": url,
                "generation.max_new_tokens": "6",
            }
        )
        report = evaluate(ChatEngine(), config, str(strong_adapter), compare=True)
    base, adapter = report.predictions["base"], report.predictions["strong"]
    expected = ["win" if len(b) > len(a) else "loss" if len(b) < len(a) else "tie" for a, b in zip(base, adapter)]
    assert [v.outcome for v in report.judge.verdicts] == expected, (base, adapter)
    assert len(seen.models) == 6 and report.metrics["strong"]["judge_win"] == report.metrics["base"]["judge_loss"]
