"""An OpenAI-compatible API over the Chat tab's engine: `qlora-studio serve`, or /v1 beside the page."""

from studio.openai_api.access import API_KEY_ENV, Access
from studio.openai_api.endpoint import OpenAIEndpoint

__all__ = ["API_KEY_ENV", "Access", "OpenAIEndpoint"]
