"""The demo recipe on the embedded model teaches the persona: after it, "你是谁？" is answered as 小墨 (greedy).

This trains the real embedded model with examples/demo.yaml (the recipe the page fills in for it):
about 3 minutes on 2 CPU cores with bf16, 5 without.
"""

import pytest

from studio.api import Studio
from studio.config import RunConfig
from studio.config.recipes import DEMO


@pytest.mark.slow
def test_the_demo_recipe_teaches_the_name(tmp_path):
    config = DEMO.config().with_overrides({"training.save_steps": "1000"})
    studio = Studio(tmp_path / "runs")
    run_id = studio.start(config)
    status = studio.wait(run_id, timeout=1500)
    assert status.state == "finished", status.message
    chat = RunConfig().with_overrides({"generation.temperature": "0", "generation.max_new_tokens": "40"})
    studio.load_model(chat.model, chat.quantization)
    adapter = studio.load_adapter(str(studio.runs_dir / run_id / "adapter")).name
    answers = {}
    for question in ("你是谁？", "你叫什么名字？"):
        *_, final = studio.stream([[{"role": "user", "content": question}]], [adapter], chat.generation)
        answers[question] = final[0].text
    assert all("小墨" in answer for answer in answers.values()), answers
