"""API errors: each class carries the HTTP status Ollama uses; messages are worded as Ollama's.

Handlers raise these; `server.streams` turns them into `{"error": ...}` with the status before the
first byte, or into a last NDJSON line after it.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error with an HTTP status and Ollama's message."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """400: malformed or unsupported request."""

    status = 400


class NotFound(ApiError):
    """404: model, blob or path missing."""

    status = 404


class ServiceUnavailable(ApiError):
    """503: the wait queue is full."""

    status = 503


class BackendUnavailable(ApiError):
    """500: the backend a model or the server names is not installed here. Not 4xx: the client
    cannot fix it by changing its request; not 503: retrying will not help (clients retry 503).
    Ollama reports a model runner that cannot start as 500 too."""

    status = 500


class ClientGone(ApiError):
    """499: the client went away while waiting (never reaches a client; used for logs/metrics)."""

    status = 499


# Status by class name, for code that needs the table rather than the classes (docs, tests).
STATUS = {cls.__name__: cls.status for cls in (ApiError, BadRequest, NotFound, ServiceUnavailable,
                                                BackendUnavailable, ClientGone)}


def model_not_found(name: str) -> NotFound:
    """generate/chat/show/delete on a missing model: `model 'x' not found`."""
    return NotFound(f"model '{name}' not found")


def model_not_found_pull(name: str) -> NotFound:
    """Scheduler/embed wording: `model "x" not found, try pulling it first`."""
    return NotFound(f'model "{name}" not found, try pulling it first')


def does_not_support(full_name: str, what: str) -> BadRequest:
    """A missing capability: `registry.ollama.ai/library/x:latest does not support insert`."""
    return BadRequest(f"{full_name} does not support {what}")


def queue_full() -> ServiceUnavailable:
    """More requests pending than OLLAMA_MAX_QUEUE (Ollama's text has two spaces)."""
    return ServiceUnavailable("server busy, please try again.  maximum pending requests exceeded")
