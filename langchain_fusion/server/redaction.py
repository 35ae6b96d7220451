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
Streamed text (token deltas) is redacted by `StreamRedactor` before its events are built:
each stream holds back only a tail that could still begin a secret (or a key-shaped
string), so a secret split over two deltas is matched once its end arrives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6
"""Shorter values are not treated as secrets (they would redact ordinary words)."""

# Anything shaped like an API key (OpenAI, OpenRouter, Anthropic, ours): an upstream error
# may quote the key it was sent, and a client must never read it back from us.
KEY_LIKE = re.compile(r"\b(?:sk|rk|pk|or|fs)-[A-Za-z0-9_\-]{12,}")
# The start of a key-shaped string that the next piece of a stream could complete.
_OPEN_KEY = re.compile(r"\b(?:(?:sk|rk|pk|or|fs)-[A-Za-z0-9_\-]*|sk|rk|pk|or|fs|[srpof])\Z")
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-]*")
MAX_HELD_CHARS = 4096
"""A stream holds back no more than this: a longer key-shaped run is redacted at once."""

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
        # Re-entrant: building the pattern allocates, a garbage collection it sets off can
        # run a finaliser that logs (an SDK client closing its pool), and the log record
        # factory redacts on the same thread, asking for this lock again.
        self._lock = threading.RLock()
        self._building = threading.local()  # this thread is inside the pattern's build
        self._fixed: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self._pattern: re.Pattern[str] | None = None
        self._prefixes: frozenset[str] = frozenset()
        """Every proper prefix of every form: what a stream's tail must not end with."""
        self._longest = 0

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
            if self._pattern is None and not self.building():
                self._building.active = True
                try:
                    forms = {f for s in (*self._fixed, *self._in_flight) for f in _forms(s)}
                    if forms:
                        ordered = sorted(forms, key=len, reverse=True)
                        self._pattern = re.compile("|".join(map(re.escape, ordered)))
                    self._prefixes = frozenset(f[:k] for f in forms for k in range(1, len(f)))
                    self._longest = max(map(len, forms), default=0)
                finally:
                    self._building.active = False
            return self._pattern

    def building(self) -> bool:
        """Whether this thread is inside `pattern()`'s build (a log record made there)."""
        return bool(getattr(self._building, "active", False))

    def split_stream(self, text: str) -> tuple[str, str]:
        """`text` (a stream's pending text) as (its redacted part no later piece can
        change, the raw rest to hold until more arrives). Held: the shortest tail that
        is still the start of a secret or of a key-shaped string; a match that begins
        before the cut is whole in `text` (it would be held otherwise), so it is redacted.
        """
        pattern = self.pattern()
        with self._lock:
            prefixes, longest = self._prefixes, self._longest
        cut = len(text)
        for start in range(max(0, len(text) - longest + 1), len(text)):
            if text[start:] in prefixes:
                cut = start
                break
        if (opened := _OPEN_KEY.search(text)) is not None:
            cut = min(cut, opened.start())
        spans = [(m.start(), m.end()) for m in KEY_LIKE.finditer(text) if m.end() < len(text)]
        if pattern is not None:
            spans += [(m.start(), m.end()) for m in pattern.finditer(text)]
        for start, end in sorted(spans):
            if start < cut:
                cut = max(cut, end)
        return self.redact(text[:cut]), text[cut:]

    def redact(self, text: str, extra: Iterable[str] = ()) -> str:
        """`text` without any known secret (nor `extra`), nor anything key-shaped."""
        for value in extra:
            if value and len(value) >= MIN_SECRET_CHARS:
                for form in _forms(value):
                    text = text.replace(form, REDACTED)
        pattern = self.pattern()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        if self.building():  # the pattern is being built: each secret as it is, by hand
            with self._lock:
                for value in sorted({*self._fixed, *self._in_flight}, key=len, reverse=True):
                    text = text.replace(value, REDACTED)
        return KEY_LIKE.sub(REDACTED, text)

    def redact_bytes(self, data: bytes) -> bytes:
        if not data:
            return data
        text = data.decode("utf-8", errors="surrogateescape")
        cleaned = self.redact(text)
        return data if cleaned == text else cleaned.encode("utf-8", errors="surrogateescape")


SECRETS = Secrets()
"""The process's secrets: logging is process-wide, so the registry is too."""


K = TypeVar("K", bound=Hashable)


class StreamRedactor(Generic[K]):
    """Redaction of text that arrives in pieces, for each of the streams of one response
    (a panelist's deltas, the answer's): `feed` gives what can go out now, `flush` the
    rest when the stream ends. What goes out, concatenated, holds no secret even when a
    secret spans pieces: only a tail that could still begin one is held back, so the
    stream stays live (a tail that starts no secret goes out at once)."""

    def __init__(self, secrets: Secrets = SECRETS) -> None:
        self.secrets = secrets
        self._held: dict[K, str] = {}
        self._swallowing: set[K] = set()
        """Streams inside a key-shaped run too long to hold: its rest is dropped."""

    def feed(self, stream: K, text: str) -> str:
        pending = self._swallow(stream, self._held.pop(stream, "") + text)
        safe, held = self.secrets.split_stream(pending)
        if len(held) > MAX_HELD_CHARS:  # only a key-shaped run grows so: redact it now
            safe, held = safe + self.secrets.redact(held), ""
            self._swallowing.add(stream)
        if held:
            self._held[stream] = held
        return safe

    def flush(self, stream: K) -> str:
        """The rest of `stream`, redacted: it has ended."""
        rest = self._swallow(stream, self._held.pop(stream, ""))
        self._swallowing.discard(stream)
        return self.secrets.redact(rest)

    def holding(self) -> list[K]:
        """The streams with text held back."""
        return list(self._held)

    def _swallow(self, stream: K, text: str) -> str:
        if stream not in self._swallowing:
            return text
        run = _KEY_CHARS.match(text)
        rest = text[run.end() if run else 0 :]
        if rest:
            self._swallowing.discard(stream)
        return rest


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
