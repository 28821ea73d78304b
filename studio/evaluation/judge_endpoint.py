"""The judge behind an OpenAI-compatible endpoint: vLLM, llama.cpp's server, Ollama, LM Studio or a hosted API.

Its prompts go out `concurrency` at a time, since a serving engine batches the requests that arrive together.
Redirects are not followed, so the URL that was checked (workspace.check_endpoint) is the only one reached. The
key is OPENAI_API_KEY's, as the openai client reads it; a local server that wants none gets a placeholder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from studio.errors import StudioError
from studio.evaluation.judge import Ask

if TYPE_CHECKING:
    import openai

TIMEOUT_S = 300.0  # one verdict; a busy local server may queue it behind many others


def endpoint_asker(
    url: str, model: str, max_tokens: int, concurrency: int, progress: Callable[[int, int], None]
) -> Ask:
    """Judge prompts -> the replies of `model` at `url` (the first model it serves when `model` is empty)."""
    import openai

    client = openai.OpenAI(
        base_url=url.strip(),
        api_key=os.environ.get("OPENAI_API_KEY") or "none",
        timeout=TIMEOUT_S,
        max_retries=2,
        http_client=openai.DefaultHttpxClient(follow_redirects=False),
    )

    def ask(prompts: list[str]) -> list[str]:
        with _said(url):
            name = model.strip() or _first_model(client, url)
            done = [0]

            def reply(prompt: str) -> str:
                answer = client.chat.completions.create(
                    model=name,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=0.0,
                    max_tokens=max_tokens,
                )
                done[0] += 1
                progress(done[0], len(prompts))
                return (answer.choices[0].message.content or "") if answer.choices else ""

            progress(0, len(prompts))
            with ThreadPoolExecutor(max(1, concurrency)) as pool:
                return list(pool.map(reply, prompts))

    return ask


def _first_model(client: openai.OpenAI, url: str) -> str:
    served = [entry.id for entry in client.models.list()]
    if not served:
        raise StudioError("evaluation.judge_endpoint_no_model", url=url)
    return served[0]


@contextmanager
def _said(url: str) -> Iterator[None]:
    """The openai client's errors as what the user can do about them (the server's own words kept)."""
    import openai

    try:
        yield
    except openai.APIConnectionError as error:
        raise StudioError("evaluation.judge_endpoint_unreachable", url=url, error=error) from error
    except openai.APIStatusError as error:
        raise StudioError(
            "evaluation.judge_endpoint_refused", url=url, status=error.status_code, error=error.message
        ) from error
