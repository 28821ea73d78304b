"""The endpoint over a real engine (the tiny model, two adapters), served by uvicorn and called over HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from studio.chat import ChatEngine
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
from studio.openai_api import Access, OpenAIEndpoint
from tests.support.asgi_server import served

# the engine's greedy answer, as the endpoint asks for it (temperature 0, no penalty, no top-k)
GREEDY = GenerationConfig(temperature=0, max_new_tokens=12, repetition_penalty=1.0, top_k=0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


@dataclass
class Api:
    url: str  # ending in /v1
    endpoint: OpenAIEndpoint
    engine: ChatEngine

    def client(self, key: str = "unused"):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)


@pytest.fixture
def engine(tiny_model_dir, strong_adapter, second_adapter):
    """The tiny base with the two adapters loaded as 'strong' and 'second'."""
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    engine.load_adapter(str(strong_adapter), "strong")
    engine.load_adapter(str(second_adapter), "second")
    yield engine
    engine.unload()


@pytest.fixture
def serve_endpoint(engine):
    """serve_endpoint(access=None, enabled=True) -> Api, served until the test ends."""
    stack = []

    def start(access: Access | None = None, enabled: bool = True, over: ChatEngine | None = None) -> Api:
        chosen = over or engine
        endpoint = OpenAIEndpoint(lambda: chosen, access, enabled=enabled)
        server = served(endpoint.standalone())
        url = server.__enter__()
        stack.append(server)
        return Api(f"{url}/v1", endpoint, chosen)

    yield start
    for server in reversed(stack):
        server.__exit__(None, None, None)


@pytest.fixture
def api(serve_endpoint) -> Api:
    return serve_endpoint()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL_QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
THOUGHT = "The user asks for Paris."


@pytest.fixture(scope="session")
def caller_model(tmp_path_factory, tiny_model_dir):
    """The tiny model taught one answer under the qwen3 template: to CALL_QUESTION with the weather tool offered, a
    thought, then a call of get_weather for Paris (a random model writes no call; this one writes it greedily)."""
    import torch
    from transformers import AutoModelForCausalLM

    from studio.modeling.tool_formats import TOOL_FORMATS
    from studio.openai_api.prompts import chat_prompt
    from studio.openai_api.schema import ChatRequest

    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir), chat_template="qwen3"), QuantizationConfig(method="none"))
    tokenizer = engine.tokenizer
    request = ChatRequest(model="m", messages=CALL_QUESTION, tools=[WEATHER])
    prompt = chat_prompt(tokenizer, request).ids
    call = TOOL_FORMATS["qwen"].calls([("get_weather", '{"city": "Paris"}')])
    answer = tokenizer.encode(f"<think>\n{THOUGHT}\n</think>\n\n{call}", add_special_tokens=False)
    answer.append(tokenizer.eos_token_id)
    engine.unload()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids, labels = torch.tensor([prompt + answer]), torch.tensor([[-100] * len(prompt) + answer])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.005:
            break
    target = tmp_path_factory.mktemp("models") / "caller"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture
def caller(caller_model):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(caller_model), chat_template="qwen3"), QuantizationConfig(method="none"))
    yield engine
    engine.unload()
