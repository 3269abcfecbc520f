"""One error body for every failure: ``{"errorCode": ..., "message": ...}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.models import ErrorResponse
from api.source import DataSourceError

log = logging.getLogger(__name__)

_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 503: "SERVICE_UNAVAILABLE"}


class ApiError(Exception):
    """An error the handlers turn into a JSON error reply."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class NotFoundError(ApiError):
    """404: the requested object does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def error_response(status_code: int, message: str) -> JSONResponse:
    """Build the JSON error reply."""
    code = _CODES.get(status_code, "BAD_REQUEST" if status_code < 500 else "INTERNAL_SERVICE_ERROR")
    body = ErrorResponse(error_code=code, message=message).model_dump(by_alias=True)
    return JSONResponse(status_code=status_code, content=body)


def _describe(err: dict) -> str:
    """Turn one pydantic validation error into ``invalid <param>: <why>``."""
    loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
    name = loc[0] if loc else "request"
    if err.get("type") == "missing":
        return f"{name} is required"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return f"invalid {name}: {msg}"


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "Bad request: a parameter is missing or malformed."},
    503: {"model": ErrorResponse, "description": "The chain could not be queried."},
}
NOT_FOUND_RESPONSE: dict[int | str, dict] = {404: {"model": ErrorResponse, "description": "Not found."}}


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so every error reply has the ``ErrorResponse`` shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "; ".join(_describe(e) for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, message)

    @app.exception_handler(DataSourceError)
    async def _source_error(_: Request, exc: DataSourceError) -> JSONResponse:
        log.warning("data source failure: %s", exc)
        return error_response(503, f"chain query failed: {exc}")
