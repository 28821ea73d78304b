"""A tiny model taught one tool conversation, so Chat's tool calls and thoughts come from a real model.

The tiny random model is trained (150 plain steps on the CPU, about 20 s on two cores) on the conversations below as
training encodes them with the qwen3 template: asked about the weather it thinks, then calls get_weather; shown
the tool's result it thinks again and answers. Its greedy answers are then exactly those turns, which tests read
back as a thought, a call card and an answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TEMPLATE = "qwen3"
TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
QUESTION = "What is the weather in Paris?"
CALL_THOUGHT = "I should look it up."
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
OBSERVATION = '{"temperature": 21}'
ANSWER_THOUGHT = "The tool says 21."
ANSWER = "It is 21 degrees in Paris."


def _think(thought: str) -> str:
    return f"<think>\n{thought}\n</think>\n\n"


def conversations() -> list[list[dict]]:
    """The two conversations taught: the call, and the answer after the tool's result."""
    from studio.data.formats import with_system

    tools = json.dumps(TOOLS)
    call = {"role": "function_call", "content": _think(CALL_THOUGHT) + json.dumps([CALL])}
    asked = [{"role": "user", "content": QUESTION}]
    answered = [*asked, call, {"role": "observation", "content": OBSERVATION}]
    answered.append({"role": "assistant", "content": _think(ANSWER_THOUGHT) + ANSWER})
    return [with_system([*asked, call], "", tools), with_system(answered, "", tools)]


def build_tool_model(tiny_model_dir: Path, target: Path, steps: int = 150) -> Path:
    """A copy of the tiny model in `target`, trained on `conversations()` until it says them word for word."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.data.tokenize import encode_conversation
    from studio.modeling.chat_templates import apply_chat_template_choice

    shutil.copytree(tiny_model_dir, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    apply_chat_template_choice(tokenizer, TEMPLATE)
    # the answer after the result is learned as Chat asks for it: earlier thoughts left out (mask_history)
    first, second = conversations()
    examples = [
        encode_conversation(tokenizer, first, 2048),
        encode_conversation(tokenizer, second, 2048, mask_history=True),
    ]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        for example in examples:
            if example is None:
                raise AssertionError("a taught conversation did not fit")
            ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(target)
    return target
