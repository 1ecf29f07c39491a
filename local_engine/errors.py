"""Engine errors; each maps onto OpenAI's error shape (and onto `gateway.errors` in-process)."""

from __future__ import annotations


class EngineError(Exception):
    status_code = 500
    type = "server_error"
    code = "engine_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:  # a more precise code than the class's (OpenAI's, where it has one)
            self.code = code

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadEngineRequest(EngineError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class UnknownModel(EngineError):
    status_code = 404
    type = "invalid_request_error"
    code = "model_not_found"


class EngineOverloaded(EngineError):
    status_code = 503
    code = "engine_overloaded"


class ModelNotAvailable(EngineError):
    status_code = 503
    code = "model_not_available"
