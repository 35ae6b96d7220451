"""What a scripted model does (`ModelScript`) and what the server saw (`RecordedRequest`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "JsonDict",
    "JsonReplyFn",
    "LogEntry",
    "ModelScript",
    "RecordedRequest",
    "ReplyFn",
    "RequestLog",
]

JsonDict = dict[str, Any]
ReplyFn = Callable[[JsonDict], str]
JsonReplyFn = Callable[[JsonDict], JsonDict | str]


@dataclass(frozen=True)
class ModelScript:
    """How one model answers. Every field is optional; the default is a healthy model.

    Content:
        reply: The assistant text, or a callable given the request body. ``None``
            gives a deterministic ~40-word answer built from the model name and the
            last user message (and the last tool result, when one follows it).
        json_reply: The answer when the request asks for ``json_schema`` or
            ``json_object``. A dict is serialised; a str is sent verbatim (prose or
            broken JSON for judge tests); a callable gets the request body. ``None``
            generates an object that validates against the request's schema.
        response_model: The ``model`` field of responses; ``None`` echoes the request.
        tool_calls: ``{"name": str, "arguments": dict | str}`` items, answered when
            the request carries ``tools`` (and ``tool_choice`` is not ``"none"``).
            Or ``"auto"``: act like a real tool-calling model (see "Automatic tool
            calls" below).
        tool_policy: ``"first_turn"`` calls tools only while no ``tool`` message
            follows the last user message, then answers with text; ``"always"``
            calls them on every request that has tools.

    Automatic tool calls (``tool_calls="auto"``), deterministic:
        When: never without ``tools`` or with ``tool_choice: "none"``; always when
            ``tool_choice`` is ``"required"`` or names a function (whatever
            ``tool_policy`` says); otherwise (``"auto"`` or absent) as ``tool_policy``
            says.
        Which: one call, to the tool ``tool_choice`` names; else to the tool the last
            user message mentions most (its whole name, as a word, beats words of its
            name: ``get_weather`` is mentioned by "weather"; words under 3 letters do
            not count), the first such tool on a tie; else to the first tool.
        Arguments: an object generated from the tool's ``parameters`` schema (as for
            ``json_schema`` answers), whose top-level parameters are then filled from
            the last user message: ``integer`` and ``number`` parameters take the
            numbers that stand alone in it ("-2", "2.5"; not "v1.2" or "x-9"), in
            order; ``string`` parameters (without ``format`` or ``pattern``) take the
            phrases it quotes (``'...'``, ``"..."``), in order, or, when it quotes
            none, the first string parameter takes the whole message. A value outside
            a string's ``minLength``/``maxLength`` is not used. "What is the value of
            magic_function(3)?" gives ``magic_function`` with ``{"input": 3}``.
        empty: Answer 200 with empty content and zero completion tokens.

    Latency:
        time_to_first_token: Seconds before the response headers, for every answer
            (errors included, hangs excepted).
        tokens_per_second: ``None`` sends everything at once; otherwise streams sleep
            ``1 / tokens_per_second`` before each token, and non-streaming answers
            wait ``tokens / tokens_per_second`` before replying.

    Faults:
        status_code: Fail with this HTTP status and an OpenAI-style error body. With
            ``error_rate == 0`` every request fails unless ``fail_first`` limits it.
        retry_after: Seconds sent as a ``Retry-After`` header with errors.
        error_message: The error's ``message`` in place of the scripted wording (an
            upstream's own words, e.g. OpenRouter's "x is not a valid model ID").
        error_fields: Fields added to the error object (e.g. OpenRouter's
            ``availability``).
        fail_first: Only the first N requests of the model fail (with
            ``status_code`` or 500); later ones succeed.
        error_rate: Probability that a request fails with ``status_code or 500``,
            drawn from ``random.Random(seed)`` per model, so the order is repeatable.
        seed: Seed for ``error_rate``.
        hang: Accept the request and never answer, until the client disconnects or
            the server stops.
        malformed_body: Answer 200 with a body (or an SSE ``data:`` line) that is
            not valid JSON.

    Usage:
        annotations: URL citations sent with the answer (``message.annotations`` and the
            last delta of a stream), as OpenRouter reports the pages its server-side web
            tools read: ``{"url": ..., "title": ...}`` items.
        cost_per_token: When set, ``usage.cost = total_tokens * cost_per_token``, as
            OpenRouter reports cost.

    Every script honours the request's ``stop`` (a string or a list): the content is
    cut before the first occurrence of any stop sequence, as OpenAI does, and usage
    counts what was sent.

    A strict server (the default) refuses a request that a real provider would refuse
    before any of this applies: see `langchain_fusion.testing.validation`.
    """

    reply: str | ReplyFn | None = None
    json_reply: JsonDict | str | JsonReplyFn | None = None
    response_model: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] | Literal["auto"] | None = None
    tool_policy: Literal["first_turn", "always"] = "first_turn"
    time_to_first_token: float = 0.0
    tokens_per_second: float | None = None
    status_code: int | None = None
    retry_after: float | None = None
    error_message: str | None = None
    error_fields: Mapping[str, Any] | None = None
    fail_first: int | None = None
    error_rate: float = 0.0
    seed: int = 0
    hang: bool = False
    malformed_body: bool = False
    empty: bool = False
    cost_per_token: float | None = None
    annotations: Sequence[Mapping[str, str]] | None = None

    def __post_init__(self) -> None:
        """Reject settings that could only produce confusing test failures later."""
        if self.tool_policy not in ("first_turn", "always"):
            policy = self.tool_policy
            raise ValueError(f"tool_policy must be 'first_turn' or 'always', not {policy!r}")
        if self.time_to_first_token < 0:
            raise ValueError("time_to_first_token must be >= 0")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be > 0 (or None for no pacing)")
        if self.status_code is not None and not 400 <= self.status_code <= 599:
            raise ValueError(f"status_code must be an HTTP error (400-599), not {self.status_code}")
        if self.fail_first is not None and self.fail_first < 0:
            raise ValueError("fail_first must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if isinstance(self.tool_calls, str):
            if self.tool_calls != "auto":
                raise ValueError(f"tool_calls must be a list or 'auto', not {self.tool_calls!r}")
            return
        for call in self.tool_calls or ():
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise ValueError(f"each tool call needs a str 'name': {call!r}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; times are `time.monotonic()` in this process.

    ``status_code`` is what was sent, 0 while nothing has been (a hang, or a client that
    left first). ``first_byte_at`` is when the response headers went out and
    ``completed_at`` when the last byte did; both stay ``None`` for a hang.
    ``response_text`` is the full assistant content sent (text or JSON), else ``None``.
    ``error`` is the ``error`` object of an error answer (a strict refusal, a scripted
    fault, a bad request), else ``None``: ``error["message"]`` says why.
    """

    path: str
    model: str
    headers: dict[str, str]
    body: JsonDict
    stream: bool
    status_code: int
    received_at: float
    first_byte_at: float | None
    completed_at: float | None
    response_text: str | None
    error: JsonDict | None = None


@dataclass
class LogEntry:
    """The mutable log entry behind a `RecordedRequest`, filled in as the answer goes out."""

    path: str
    model: str
    headers: dict[str, str]
    body: JsonDict
    stream: bool
    received_at: float
    status_code: int = 0
    first_byte_at: float | None = None
    completed_at: float | None = None
    response_text: str | None = None
    error: JsonDict | None = None

    def freeze(self) -> RecordedRequest:
        """Return an immutable snapshot."""
        return RecordedRequest(
            path=self.path,
            model=self.model,
            headers=dict(self.headers),
            body=self.body,
            stream=self.stream,
            status_code=self.status_code,
            received_at=self.received_at,
            first_byte_at=self.first_byte_at,
            completed_at=self.completed_at,
            response_text=self.response_text,
            error=self.error,
        )


class RequestLog:
    """Every request in arrival order; written by the server's thread, read by tests."""

    def __init__(self) -> None:
        """An empty log."""
        self._lock = threading.Lock()
        self._entries: list[LogEntry] = []

    def add(self, entry: LogEntry) -> LogEntry:
        """Append ``entry`` and return it, for the answer to fill in."""
        with self._lock:
            self._entries.append(entry)
        return entry

    def mark(self, entry: LogEntry, **changes: Any) -> None:
        """Fill in fields of ``entry`` as its answer goes out."""
        with self._lock:
            for name, value in changes.items():
                setattr(entry, name, value)

    def snapshot(self) -> list[RecordedRequest]:
        """Immutable copies of every entry so far."""
        with self._lock:
            return [entry.freeze() for entry in self._entries]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
