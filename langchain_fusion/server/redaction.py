"""Redaction at one choke point: no configured secret leaves the server, by value.

The secrets are every key the server knows in clear: its upstream key(s), the keys it
was given in clear, and the keys each request carries while it runs (a caller's own
upstream key, the server key it presented). Three places see everything that leaves:

- `RedactingMiddleware` wraps the ASGI app: every response header and body byte (JSON
  bodies, SSE events) passes through it, whichever route or error path wrote it;
- `install_log_redaction` wraps the logging record factory: every log record of the
  process (the server's, uvicorn's, the SDKs', httpx's) is scrubbed when it is made;
- `redact` for the text the server builds itself (error messages).

A secret is matched by value, in the forms a body can carry it (as is, JSON-escaped,
URL-encoded); anything shaped like an API key is removed too, as a second net.
A secret the upstream spreads over several streamed tokens is model output, not a
contiguous string: it cannot be matched, and is not claimed to be.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6
"""Shorter values are not treated as secrets (they would redact ordinary words)."""

# Anything shaped like an API key (OpenAI, OpenRouter, Anthropic, ours): an upstream error
# may quote the key it was sent, and a client must never read it back from us.
KEY_LIKE = re.compile(r"\b(?:sk|rk|pk|or|fs)-[A-Za-z0-9_\-]{12,}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


def _forms(secret: str) -> set[str]:
    """`secret` as a body may carry it: as is, JSON-escaped, URL-encoded."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""),
    }


class Secrets:
    """The secrets known by value: fixed ones (configured) and those of requests in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Configured secrets, redacted for the life of the process."""
        with self._lock:
            self._fixed.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)
            self._pattern = None

    @contextlib.contextmanager
    def holding(self, values: Iterable[str]) -> Iterator[None]:
        """`values` are secrets while the block runs (a request's own keys)."""
        held = [v for v in values if v and len(v) >= MIN_SECRET_CHARS]
        with self._lock:
            self._in_flight.update(held)
            self._pattern = None
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.subtract(held)
                self._in_flight += Counter()  # drop the zeros
                self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching every form of every secret (longest first)."""
        with self._lock:
            if self._pattern is None:
                forms = {f for s in (*self._fixed, *self._in_flight) for f in _forms(s)}
                if forms:
                    ordered = sorted(forms, key=len, reverse=True)
                    self._pattern = re.compile("|".join(map(re.escape, ordered)))
            return self._pattern

    def redact(self, text: str, extra: Iterable[str] = ()) -> str:
        """`text` without any known secret (nor `extra`), nor anything key-shaped."""
        for value in extra:
            if value and len(value) >= MIN_SECRET_CHARS:
                for form in _forms(value):
                    text = text.replace(form, REDACTED)
        pattern = self.pattern()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return KEY_LIKE.sub(REDACTED, text)

    def redact_bytes(self, data: bytes) -> bytes:
        if not data:
            return data
        text = data.decode("utf-8", errors="surrogateescape")
        cleaned = self.redact(text)
        return data if cleaned == text else cleaned.encode("utf-8", errors="surrogateescape")


SECRETS = Secrets()
"""The process's secrets: logging is process-wide, so the registry is too."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without `secrets`, any secret the server knows, or anything key-shaped."""
    return SECRETS.redact(text, secrets)


class RedactingMiddleware:
    """Every response of the app, headers and body, without a known secret.

    `request_secrets` names the secrets a request carries (from its headers); they are
    held for as long as the request runs, so logs written meanwhile are scrubbed too.
    A body sent whole is redacted whole (its content-length fixed); a stream is redacted
    event by event (each SSE event is one body message).
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Any],
        request_secrets: Callable[[Mapping[str, str]], list[str]],
        secrets: Secrets = SECRETS,
    ) -> None:
        self.app = app
        self.request_secrets = request_secrets
        self.secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        pending: list[Message] = []  # the start message, until the body says its size

        async def redacting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, self.secrets.redact_bytes(value)) for name, value in message["headers"]
                ]
                pending.append(message)
                return
            if message["type"] == "http.response.body":
                message["body"] = self.secrets.redact_bytes(message.get("body", b""))
                if pending:
                    start = pending.pop()
                    if not message.get("more_body", False):
                        start["headers"] = _with_length(start["headers"], len(message["body"]))
                    else:  # a stream: its size is not known, and not claimed
                        start["headers"] = [
                            (n, v) for n, v in start["headers"] if n.lower() != b"content-length"
                        ]
                    await send(start)
            await send(message)

        with self.secrets.holding(self.request_secrets(headers)):
            await self.app(scope, receive, redacting_send)


def _with_length(headers: list[tuple[bytes, bytes]], size: int) -> list[tuple[bytes, bytes]]:
    kept = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    return [*kept, (b"content-length", str(size).encode())]


_installed = False
_install_lock = threading.Lock()


def install_log_redaction(secrets: Secrets = SECRETS) -> None:
    """Scrub every log record of the process when it is made (message and traceback)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: let logging report it as usual
                return record
            cleaned = secrets.redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and not record.exc_text:
                formatted = logging.Formatter().formatException(record.exc_info)
                record.exc_text = secrets.redact(formatted)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
