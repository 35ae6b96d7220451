"""LangSmith: a dataset read by name (or other data uploaded as one), and each arm recorded
as an experiment on it, against a loopback stand-in of the LangSmith API (the real
`langsmith` client; never the internet)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from langsmith import Client

from langchain_fusion.eval import EvalConfig, EvalItem, load_jsonl, load_langsmith, run_eval
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


def _now() -> str:
    return datetime.now(UTC).isoformat()


class StandIn(ThreadingHTTPServer):
    """Just enough of LangSmith for reading and creating datasets and examples, and posting
    runs and feedback. Like the real API, a dataset name or an example id is taken once:
    creating it again is a 409 conflict."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.refuse = False  # answer every write with 403
        self.datasets: dict[str, dict[str, Any]] = {
            DATASET_ID: {
                "id": DATASET_ID,
                "name": "sums",
                "tenant_id": TENANT,
                "created_at": "2025-01-01T00:00:00Z",
            }
        }
        self.examples: dict[str, dict[str, Any]] = {e["id"]: dict(e) for e in EXAMPLES}

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
            names = query.get("name")
            with self.server.lock:
                datasets = list(self.server.datasets.values())
            found = [d for d in datasets if not names or d["name"] in names]
            limit = int(query.get("limit", ["100"])[0])
            self._reply(200, found[:limit])
        elif path == "/examples":
            offset = int(query.get("offset", ["0"])[0])
            limit = int(query.get("limit", ["100"])[0])
            datasets, ids = query.get("dataset"), query.get("id")
            with self.server.lock:
                found = [
                    e
                    for e in self.server.examples.values()
                    if (not datasets or e["dataset_id"] in datasets) and (not ids or e["id"] in ids)
                ]
            self._reply(200, found[offset : offset + limit])
        else:
            self._reply(404, {"detail": "not in the stand-in"})

    def do_POST(self) -> None:
        path, _, body = self._record()
        if self.server.refuse:
            self._reply(403, {"detail": "forbidden"})
        elif path == "/sessions":
            self._reply(200, {**body, "tenant_id": TENANT, "start_time": "2025-01-01T00:00:00Z"})
        elif path == "/datasets":
            self._create_dataset(body)
        elif path == "/examples/bulk":
            self._create_examples(body)
        else:
            self._reply(202 if path.startswith("/runs") else 200, {})

    def _create_dataset(self, body: dict[str, Any]) -> None:
        with self.server.lock:
            if any(d["name"] == body["name"] for d in self.server.datasets.values()):
                self._reply(409, {"detail": "Dataset with this name already exists."})
                return
            dataset = {
                "id": str(uuid.uuid4()),
                "name": body["name"],
                "description": body.get("description"),
                "data_type": body.get("data_type", "kv"),
                "tenant_id": TENANT,
                "created_at": _now(),
                "modified_at": _now(),
                "example_count": 0,
                "session_count": 0,
            }
            self.server.datasets[dataset["id"]] = dataset
        self._reply(200, dataset)

    def _create_examples(self, body: list[dict[str, Any]]) -> None:
        with self.server.lock:
            ids = [str(e.get("id") or uuid.uuid4()) for e in body]
            if len(set(ids)) < len(ids) or any(i in self.server.examples for i in ids):
                self._reply(409, {"detail": "Example with this id already exists."})
                return
            if any(e["dataset_id"] not in self.server.datasets for e in body):
                self._reply(404, {"detail": "Dataset not found"})
                return
            created = [
                {
                    "id": i,
                    "dataset_id": e["dataset_id"],
                    "inputs": e.get("inputs") or {},
                    "outputs": e.get("outputs"),
                    "metadata": e.get("metadata"),
                    "created_at": e.get("created_at") or _now(),
                    "modified_at": _now(),
                }
                for i, e in zip(ids, body, strict=True)
            ]
            self.server.examples.update({e["id"]: e for e in created})
        self._reply(200, created)

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


def _jsonl_items(path: Path, count: int) -> list[EvalItem]:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"Q{i}: what is {i} plus {i}?", "answer": 2 * i})
            + "\n"
            for i in range(count)
        )
    )
    return load_jsonl(path)


def _posted_examples(api: StandIn) -> list[dict[str, Any]]:
    return [example for batch in api.bodies("POST", "/examples/bulk") for example in batch]


def test_other_data_is_uploaded_as_a_dataset_the_arms_are_experiments_on(
    langsmith_api: StandIn, tmp_path: Path
) -> None:
    client = Client(api_url=langsmith_api.url, api_key=KEY)
    items = _jsonl_items(tmp_path / "data.jsonl", 3)
    assert all(item.example_id is None for item in items)
    out = tmp_path / "out"
    with ScriptedOpenAIServer(scripts()) as server:
        settings = config(
            server,
            models=["a", "b"],
            arms=["single", "fusion"],
            out_dir=out,
            langsmith_client=client,
        )
        run_eval(items, settings)
    client.flush()
    prefix = json.loads((out / "manifest.json").read_text())["experiment_prefix"]

    created = langsmith_api.bodies("POST", "/datasets")
    assert [d["name"] for d in created] == [f"{prefix}:data"]
    (dataset,) = [d for d in langsmith_api.datasets.values() if d["name"] == f"{prefix}:data"]

    posted = _posted_examples(langsmith_api)
    assert len(posted) == len(items)
    example_of = {}  # question -> example id
    for item, example in zip(items, posted, strict=True):
        assert example["dataset_id"] == dataset["id"]
        assert example["inputs"] == {"question": item.question}
        assert example["outputs"] == {"answer": item.reference}
        assert example["metadata"]["item_id"] == item.id
        example_of[item.question] = example["id"]
    assert len(set(example_of.values())) == len(items)

    sessions = langsmith_api.bodies("POST", "/sessions")
    assert sorted(s["name"] for s in sessions) == sorted(
        [f"{prefix}:single:a", f"{prefix}:single:b", f"{prefix}:fusion"]
    )
    assert all(s["reference_dataset_id"] == dataset["id"] for s in sessions)

    roots = [r for r in langsmith_api.runs().values() if not r.get("parent_run_id")]
    assert len(roots) == 3 * len(items)
    for root in roots:
        assert root["session_name"] == f"{prefix}:{root['name']}"
        assert root["reference_example_id"] == example_of[root["inputs"]["question"]]
    by_id = {r["id"]: r for r in roots}
    feedback = langsmith_api.bodies("POST", "/feedback")
    assert len(feedback) == 3 * len(items)
    for entry in feedback:
        run = by_id[entry["run_id"]]
        index = int(run["inputs"]["question"][1])
        model = {"single:a": "a", "single:b": "b", "fusion": "j"}[run["name"]]
        assert entry["key"] == "correct"
        assert entry["score"] == int(index in CORRECT[model])


def test_a_resumed_run_reuses_its_dataset_and_examples(
    langsmith_api: StandIn, tmp_path: Path
) -> None:
    client = Client(api_url=langsmith_api.url, api_key=KEY)
    out = tmp_path / "out"
    uploads = []
    with ScriptedOpenAIServer(scripts()) as server:
        settings = config(
            server, models=["a"], arms=["single"], out_dir=out, langsmith_client=client
        )
        for count in (2, 3, 3):  # a run, resumed with one more item, resumed again
            run_eval(_jsonl_items(tmp_path / "data.jsonl", count), settings)
            client.flush()
            uploads.append(len(_posted_examples(langsmith_api)))
    prefix = json.loads((out / "manifest.json").read_text())["experiment_prefix"]

    assert [d["name"] for d in langsmith_api.bodies("POST", "/datasets")] == [f"{prefix}:data"]
    (dataset,) = [d for d in langsmith_api.datasets.values() if d["name"] == f"{prefix}:data"]
    assert uploads == [2, 3, 3]  # only the new item is sent; nothing on the last resumption
    posted = _posted_examples(langsmith_api)
    assert len({e["id"] for e in posted}) == len(posted) == 3
    example_of = {e["inputs"]["question"]: e["id"] for e in posted}

    sessions = langsmith_api.bodies("POST", "/sessions")
    assert [s["name"] for s in sessions] == [f"{prefix}:single:a"] * 3
    assert all(s["reference_dataset_id"] == dataset["id"] for s in sessions)
    roots = [r for r in langsmith_api.runs().values() if not r.get("parent_run_id")]
    assert len(roots) == 3  # the stored answers are not asked again
    for root in roots:
        assert root["reference_example_id"] == example_of[root["inputs"]["question"]]
