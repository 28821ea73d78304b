"""What the endpoint refuses, and how: a StudioError (its text from the translation table) with an HTTP status, said
to the client in OpenAI's error shape so that its SDKs raise the matching exception (BadRequestError for 400, ...)."""

from __future__ import annotations

from typing import Any

from studio.errors import StudioError
from studio.openai_api.schema import ErrorBody, ErrorResponse

# OpenAI's error types by status: clients read `type` and `code`, people read `message`
_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


class ApiError(StudioError):
    """A request the endpoint refuses; `param` names the request field at fault, `code` is OpenAI's short code."""

    def __init__(self, key: str, /, status: int = 400, param: str | None = None, code: str | None = None, **args: Any):
        super().__init__(key, **args)
        self.status, self.param, self.code = status, param, code

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def response_body(self) -> ErrorResponse:
        return ErrorResponse(
            error=ErrorBody(message=str(self.message), type=self.type, param=self.param, code=self.code)
        )
