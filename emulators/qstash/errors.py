"""The errors a request can end in; app.py turns each into `{"error": message}` with its status.

ApiError(status, message)
├── BadRequest          400
│   └── BadHeader       400, names the header: "invalid Upstash-Delay header: ..."
├── Unauthorized        401
├── NotFound            404
├── MethodNotAllowed    405
└── PayloadTooLarge     413
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class BadHeader(BadRequest):
    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"invalid {header} header: {reason}")
        self.header = header
        self.reason = reason


class Unauthorized(ApiError):
    status = 401


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class PayloadTooLarge(ApiError):
    status = 413
