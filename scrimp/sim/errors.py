"""Errors in each API's own JSON shape and status."""

from __future__ import annotations

from starlette.responses import JSONResponse

# HTTP status -> (OpenAI error type, Anthropic error type)
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    403: ("invalid_request_error", "permission_error"),
    404: ("invalid_request_error", "not_found_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", "api_error"),
    503: ("server_error", "overloaded_error"),
    529: ("server_error", "overloaded_error"),
}


class SimError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after)))}

    def openai(self) -> JSONResponse:
        kind = _TYPES.get(self.status, ("server_error", "api_error"))[0]
        if self.status == 401:
            kind = "invalid_request_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers())

    def anthropic(self) -> JSONResponse:
        kind = _TYPES.get(self.status, ("server_error", "api_error"))[1]
        body = {"type": "error", "error": {"type": kind, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers())

    def render(self, provider: str) -> JSONResponse:
        return self.anthropic() if provider == "anthropic" else self.openai()


def invalid(message: str, param: str | None = None) -> SimError:
    return SimError(400, message, param=param)
