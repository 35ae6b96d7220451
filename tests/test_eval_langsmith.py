"""LangSmith: a dataset read by name, and each arm recorded as an experiment on it, against
a loopback stand-in of the LangSmith API (the real `langsmith` client; never the internet)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from langsmith import Client

from langchain_fusion.eval import EvalConfig, load_langsmith, run_eval
from langchain_fusion.testing import ScriptedOpenAIServer
from tests.test_eval_run import CORRECT, config, scripts

KEY = "lsv2_pt_FAKE-eval-stand-in-key"
DATASET_ID = str(uuid.uuid4())
TENANT = str(uuid.uuid4())
EXAMPLES = [
    {
        "id": str(uuid.uuid4()),
        "dataset_id": DATASET_ID,
        "inputs": {"question": f"Q{i}: what is {i} plus {i}?"},
        "outputs": {"answer": 2 * i},
        "created_at": "2025-01-01T00:00:00Z",
    }
    for i in range(3)
]


class StandIn(ThreadingHTTPServer):
    """Just enough of LangSmith for reading a dataset and posting runs and feedback."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.refuse = False  # answer every write with 403

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, method: str, path: str) -> list[Any]:
        with self.lock:
            return [body for m, p, body in self.log if m == method and p == path]

    def runs(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for batch in self.bodies("POST", "/runs/batch"):
            for run in (batch.get("post") or []) + (batch.get("patch") or []):
                target = merged.setdefault(str(run["id"]), {})
                target.update({k: v for k, v in run.items() if v is not None})
        for run in self.bodies("POST", "/runs"):
            merged.setdefault(str(run["id"]), {}).update(run)
        return merged


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, dict[str, list[str]], Any]:
        parsed = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.startswith((b"{", b"[")) else raw
        assert self.headers.get("x-api-key") == KEY
        with self.server.lock:
            self.server.log.append((self.command, parsed.path, body))
        return parsed.path, parse_qs(parsed.query), body

    def do_GET(self) -> None:
        path, query, _ = self._record()
        if path == "/info":
            self._reply(
                200,
                {
                    "version": "0.10.0",
                    "instance_flags": {},
                    "batch_ingest_config": {
                        "use_multipart_endpoint": False,
                        "size_limit": 100,
                        "size_limit_bytes": 20_000_000,
                        "scale_up_nthreads_limit": 1,
                        "scale_up_qsize_trigger": 1000,
                        "scale_down_nempty_trigger": 4,
                    },
                },
            )
        elif path == "/datasets":
            found = query.get("name") == ["sums"]
            self._reply(
                200,
                [
                    {
                        "id": DATASET_ID,
                        "name": "sums",
                        "tenant_id": TENANT,
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                ]
                if found
                else [],
            )
        elif path == "/examples":
            offset = int(query.get("offset", ["0"])[0])
            self._reply(200, EXAMPLES if offset == 0 else [])
        else:
            self._reply(404, {"detail": "not in the stand-in"})

    def do_POST(self) -> None:
        path, _, body = self._record()
        if self.server.refuse:
            self._reply(403, {"detail": "forbidden"})
        elif path == "/sessions":
            self._reply(200, {**body, "tenant_id": TENANT, "start_time": "2025-01-01T00:00:00Z"})
        else:
            self._reply(202 if path.startswith("/runs") else 200, {})

    def do_PATCH(self) -> None:
        self._record()
        self._reply(200, {})


@pytest.fixture
def langsmith_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.delenv(name, raising=False)
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LANGSMITH_ENDPOINT", server.url)
    monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_each_arm_is_an_experiment_on_the_dataset(langsmith_api: StandIn) -> None:
    client = Client(api_url=langsmith_api.url, api_key=KEY)
    items = load_langsmith("sums", client)
    assert [i.example_id for i in items] == [e["id"] for e in EXAMPLES]
    assert [i.reference for i in items] == [0, 2, 4]
    with ScriptedOpenAIServer(scripts()) as server:
        settings: EvalConfig = config(
            server,
            models=["a", "b"],
            arms=["single", "fusion"],
            langsmith_dataset="sums",
            langsmith_client=client,
        )
        report = run_eval(items, settings)
    client.flush()

    sessions = langsmith_api.bodies("POST", "/sessions")
    names = [s["name"] for s in sessions]
    prefix = names[0].rsplit(":", 2)[0]
    assert sorted(names) == sorted([f"{prefix}:single:a", f"{prefix}:single:b", f"{prefix}:fusion"])
    assert all(s["reference_dataset_id"] == DATASET_ID for s in sessions)

    roots = [r for r in langsmith_api.runs().values() if not r.get("parent_run_id")]
    assert len(roots) == 3 * len(items)
    by_id = {r["id"]: r for r in roots}
    for root in roots:
        assert root["session_name"] == f"{prefix}:{root['name']}"
        assert root["reference_example_id"] in {e["id"] for e in EXAMPLES}
    # The fusion runs carry the pipeline's trace beneath them.
    fusion_root = next(r for r in roots if r["name"] == "fusion")
    children = [
        r
        for r in langsmith_api.runs().values()
        if r.get("trace_id") == fusion_root["id"] and r["id"] != fusion_root["id"]
    ]
    assert any(str(c.get("name", "")).startswith("panel:") for c in children)

    feedback = langsmith_api.bodies("POST", "/feedback")
    assert len(feedback) == 3 * len(items)
    for entry in feedback:
        run = by_id[entry["run_id"]]
        index = next(i for i, e in enumerate(EXAMPLES) if e["id"] == run["reference_example_id"])
        model = {"single:a": "a", "single:b": "b", "fusion": "j"}[run["name"]]
        assert entry["key"] == "correct"
        assert entry["session_id"] == next(
            sess["id"] for sess in sessions if sess["name"] == run["session_name"]
        )
        assert entry["score"] == int(index in CORRECT[model])
    assert report.arm("fusion").correct == len(CORRECT["j"] & {0, 1, 2})


def test_without_a_key_nothing_goes_to_langsmith(
    langsmith_api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANGSMITH_API_KEY")
    monkeypatch.delenv("LANGCHAIN_API_KEY", raising=False)
    with ScriptedOpenAIServer(scripts()) as server:
        from tests.test_eval_run import items

        run_eval(items()[:2], config(server, arms=["single"]))
    assert langsmith_api.log == []


def test_a_langsmith_failure_never_stops_the_evaluation(
    langsmith_api: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    langsmith_api.refuse = True
    client = Client(api_url=langsmith_api.url, api_key=KEY)
    from tests.test_eval_run import items

    with ScriptedOpenAIServer(scripts()) as server:
        report = run_eval(
            items()[:2], config(server, arms=["single"], langsmith=True, langsmith_client=client)
        )
    assert report.complete
    assert report.arm("single:a").correct == 2
    assert "LangSmith experiments not recorded" in caplog.text
