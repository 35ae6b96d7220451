"""LangSmith traces read as the pipeline: `fusion`, `panel:<model>`, `judge`, `synthesis`.

The real `langsmith` client posts the runs of a deliberation to a loopback stand-in of the
LangSmith API, which records every request. The client asks `GET /info` how to send runs,
so the stand-in can make it use each of its ingestion paths: multipart (`POST
/runs/multipart`), multipart compressed with zstd (what LangSmith itself enables), and
JSON batches (`POST /runs/batch`). The models are the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zstandard
from langchain_core.messages import AIMessage
from langchain_core.tracers import LangChainTracer
from langsmith import Client
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from langchain_fusion import (
    ChatFusion,
    FusionParameters,
    OpenAICompatibleBackend,
    create_fusion_graph,
)
from langchain_fusion.background import BackgroundServer
from langchain_fusion.testing import ScriptedOpenAIServer

OPENROUTER_KEY = "sk-or-v1-FAKE-0f1e2d3c4b5a69788796a5b4c3d2e1f0-do-not-trace"
LANGSMITH_KEY = "lsv2_pt_FAKE-langsmith-key-for-the-loopback-stand-in"
PROJECT = "langchain-fusion-tests"
PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
QUESTION = "Where do economists disagree on carbon taxes?"
TIMEOUT_S = 10.0

# The ingestion paths a LangSmith server can ask the client to use.
TRANSPORTS: dict[str, dict[str, Any]] = {
    "multipart": {"use_multipart_endpoint": True, "zstd": False},
    "multipart-zstd": {"use_multipart_endpoint": True, "zstd": True},
    "batch-json": {"use_multipart_endpoint": False, "zstd": False},
}


@dataclass(frozen=True)
class Recorded:
    """One request the stand-in received; `body` is decompressed."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LangSmithStandIn(BackgroundServer):
    """Just enough of the LangSmith API for the client to post runs, on 127.0.0.1."""

    def __init__(self, *, use_multipart_endpoint: bool, zstd: bool) -> None:
        self.info = {
            "version": "0.10.0",
            "batch_ingest_config": {
                "use_multipart_endpoint": use_multipart_endpoint,
                "size_limit": 100,
                "size_limit_bytes": 20_971_520,
                "scale_up_nthreads_limit": 4,
                "scale_up_qsize_trigger": 1000,
                "scale_down_nempty_trigger": 4,
            },
            "instance_flags": {"zstd_compression_enabled": zstd},
        }
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/info", self._get_info, methods=["GET"]),
                Route("/runs", self._post_run, methods=["POST"]),
                Route("/runs/batch", self._accept, methods=["POST"]),
                Route("/runs/multipart", self._accept, methods=["POST"]),
                Route("/runs/{run_id}", self._accept, methods=["PATCH"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST", "PATCH", "PUT"]),
            ]
        )
        super().__init__(app, name="langsmith-stand-in")

    async def _record(self, request: Request) -> Recorded:
        body = await request.body()
        if request.headers.get("content-encoding") == "zstd":
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        recorded = Recorded(
            request.method,
            request.url.path,
            {name.lower(): value for name, value in request.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    async def _get_info(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(self.info)

    async def _post_run(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({})

    async def _accept(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({}, status_code=202)

    async def _unknown(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"detail": "not in the stand-in"}, status_code=404)

    # -- reading what was posted ---------------------------------------------------------

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run, its creation and its updates merged, by id."""
        runs: dict[str, dict[str, Any]] = {}
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for fields in _operations(request):
                run = runs.setdefault(str(fields["id"]), {})
                for key, value in fields.items():
                    if value is not None or key not in run:
                        run[key] = value
        return runs


def _operations(request: Recorded) -> Iterator[dict[str, Any]]:
    """The run creations and updates in one request, whatever the transport."""
    if request.path == "/runs" and request.method == "POST":
        yield json.loads(request.body)
    elif request.path.startswith("/runs/") and request.method == "PATCH":
        yield {"id": request.path.rsplit("/", 1)[1], **json.loads(request.body)}
    elif request.path == "/runs/batch":
        batch = json.loads(request.body)
        yield from batch.get("post") or []
        yield from batch.get("patch") or []
    elif request.path == "/runs/multipart":
        yield from _multipart_operations(request)


def _multipart_operations(request: Recorded) -> Iterator[dict[str, Any]]:
    """Parts are named `post.<id>`, `patch.<id>` and `<op>.<id>.<field>` (inputs, outputs...)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        operation, run_id, *field = name.split(".")
        if operation not in ("post", "patch"):
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        value = json.loads(payload)
        yield {"id": run_id, field[0]: value} if field else {**value, "id": run_id}


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(params=list(TRANSPORTS))
def langsmith_api(request: pytest.FixtureRequest) -> Iterator[LangSmithStandIn]:
    with LangSmithStandIn(**TRANSPORTS[request.param]) as api:
        yield api


@pytest.fixture
def zstd_langsmith_api() -> Iterator[LangSmithStandIn]:
    with LangSmithStandIn(**TRANSPORTS["multipart-zstd"]) as api:
        yield api


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of (tracer, client) posting to a stand-in; clients are cleaned up after."""
    # Only the tracer given as a callback traces: no environment-configured second one.
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.delenv(name, raising=False)
    clients: list[Client] = []

    def make(api: LangSmithStandIn) -> tuple[LangChainTracer, Client]:
        client = Client(api_url=api.url(), api_key=LANGSMITH_KEY, auto_batch_tracing=True)
        clients.append(client)
        return LangChainTracer(client=client, project_name=PROJECT), client

    yield make
    for client in clients:
        client.cleanup(timeout=TIMEOUT_S)


def flush(tracer: LangChainTracer, client: Client) -> None:
    tracer.wait_for_futures()
    client.flush(timeout=TIMEOUT_S)


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr(OPENROUTER_KEY), max_retries=0, timeout=10.0
    )


def ancestors(run: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's parents, nearest first, up to the root."""
    chain = []
    parent_id = run.get("parent_run_id")
    while parent_id is not None:
        parent = runs[str(parent_id)]
        chain.append(parent)
        parent_id = parent.get("parent_run_id")
    return chain


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


def llm_runs(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs.values():
        if run["run_type"] == "llm":
            by_name.setdefault(run["name"], []).append(run)
    return by_name


def assert_tree_is_consistent(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One trace, one root, dotted orders that nest as the parent ids do; returns the root."""
    roots = [run for run in runs.values() if run.get("parent_run_id") is None]
    assert len(roots) == 1, [run["name"] for run in roots]
    root = roots[0]
    assert {str(run["trace_id"]) for run in runs.values()} == {str(root["id"])}
    for run in runs.values():
        assert run.get("end_time"), f"{run['name']} never ended"
        assert run.get("error") is None, f"{run['name']}: {run.get('error')}"
        parent_id = run.get("parent_run_id")
        if parent_id is None:
            continue
        parent = runs[str(parent_id)]
        assert run["dotted_order"].startswith(parent["dotted_order"] + "."), run["name"]
        assert run["dotted_order"].endswith(str(run["id"]))
    return root


def assert_no_secret_posted(api: LangSmithStandIn) -> None:
    """Bodies never carry a key; the LangSmith key travels in the header only."""
    assert api.requests
    for request in api.requests:
        assert OPENROUTER_KEY.encode() not in request.body, request.path
        assert LANGSMITH_KEY.encode() not in request.body, request.path
        if request.path != "/info":
            assert request.headers.get("x-api-key") == LANGSMITH_KEY


def assert_only_ingestion_endpoints(api: LangSmithStandIn) -> None:
    paths = {(request.method, request.path) for request in api.requests}
    unexpected = {
        (method, path)
        for method, path in paths
        if path not in ("/info", "/runs", "/runs/batch", "/runs/multipart")
        and not (method == "PATCH" and path.startswith("/runs/"))
    }
    assert unexpected == set()


# -- the graph ----------------------------------------------------------------------------


def test_graph_trace_reads_as_the_pipeline(
    langsmith_api: LangSmithStandIn, traced: Any, scripted_server: ScriptedOpenAIServer
) -> None:
    tracer, client = traced(langsmith_api)
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE), backend=backend_for(scripted_server)
    )
    output = graph.invoke({"messages": [("user", QUESTION)]}, {"callbacks": [tracer]})
    flush(tracer, client)

    assert output["answer"]
    # The backend really used the key that must not reach the trace.
    assert scripted_server.requests[0].headers["authorization"] == f"Bearer {OPENROUTER_KEY}"
    runs = langsmith_api.runs()
    root = assert_tree_is_consistent(runs)

    assert root["name"] == "fusion"
    assert root["run_type"] == "chain"
    assert root["session_name"] == PROJECT
    assert "fusion" in root["tags"]
    root_metadata = metadata(root)
    assert root_metadata["fusion_panel"] == PANEL
    assert root_metadata["fusion_judge"] == JUDGE
    assert root_metadata["fusion_preset"] == "general-high"
    assert root_metadata["fusion_depth"] == 1
    assert output["result"].model_dump(mode="json")["status"] == root["outputs"]["result"]["status"]

    models = llm_runs(runs)
    assert sorted(models) == ["judge", "panel:panel-a", "panel:panel-b", "synthesis"]
    expected_model = {
        "panel:panel-a": "panel-a",
        "panel:panel-b": "panel-b",
        "judge": JUDGE,
        "synthesis": JUDGE,  # the outer model defaults to the judge
    }
    expected_node = {
        "panel:panel-a": "panelist",
        "panel:panel-b": "panelist",
        "judge": "judge",
        "synthesis": "synthesis",
    }
    for name, calls in models.items():
        assert len(calls) == 1, name
        run = calls[0]
        lineage = ancestors(run, runs)
        assert lineage[-1]["id"] == root["id"], name
        # Inside its graph node, a child of the root.
        node = lineage[-2]
        assert node["name"] == expected_node[name]
        assert metadata(node)["langgraph_node"] == expected_node[name]
        run_metadata = metadata(run)
        assert run_metadata["ls_provider"] == "openai", name  # OpenAI-compatible endpoint
        assert run_metadata["ls_model_name"] == expected_model[name]
        assert run_metadata["ls_model_type"] == "chat"
        # The deliberation's set-up is on every run inside it.
        assert run_metadata["fusion_panel"] == PANEL
        assert run_metadata["fusion_preset"] == "general-high"
        assert run_metadata["fusion_depth"] == 1
        assert "fusion" in run["tags"]
    assert metadata(models["judge"][0])["ls_temperature"] == 0.0  # a repeatable analysis

    assert_no_secret_posted(langsmith_api)
    assert_only_ingestion_endpoints(langsmith_api)


async def test_async_graph_trace_has_the_same_shape(
    zstd_langsmith_api: LangSmithStandIn, traced: Any, scripted_server: ScriptedOpenAIServer
) -> None:
    tracer, client = traced(zstd_langsmith_api)
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE, preset="general-budget"),
        backend=backend_for(scripted_server),
    )
    await graph.ainvoke({"messages": [("user", QUESTION)]}, {"callbacks": [tracer]})
    await asyncio.to_thread(flush, tracer, client)

    runs = zstd_langsmith_api.runs()
    root = assert_tree_is_consistent(runs)
    assert root["name"] == "fusion"
    assert metadata(root)["fusion_preset"] == "general-budget"
    models = llm_runs(runs)
    assert sorted(models) == ["judge", "panel:panel-a", "panel:panel-b", "synthesis"]
    for calls in models.values():
        assert metadata(calls[0])["fusion_preset"] == "general-budget"
    assert_no_secret_posted(zstd_langsmith_api)


def test_judge_model_run_is_named_judge_without_research_tools(
    zstd_langsmith_api: LangSmithStandIn, traced: Any, scripted_server: ScriptedOpenAIServer
) -> None:
    tracer, client = traced(zstd_langsmith_api)
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[]),
        backend=backend_for(scripted_server),
    )
    graph.invoke({"messages": [("user", QUESTION)]}, {"callbacks": [tracer]})
    flush(tracer, client)

    models = llm_runs(zstd_langsmith_api.runs())
    assert sorted(models) == ["judge", "panel:panel-a", "panel:panel-b", "synthesis"]


# -- ChatFusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["invoke", "astream"])
async def test_chat_fusion_trace_nests_the_deliberation(
    call: str,
    zstd_langsmith_api: LangSmithStandIn,
    traced: Any,
    scripted_server: ScriptedOpenAIServer,
) -> None:
    tracer, client = traced(zstd_langsmith_api)
    llm = ChatFusion(
        model="openrouter/fusion",
        analysis_models=PANEL,
        judge_model=JUDGE,
        tool_choice="required",
        base_url=scripted_server.base_url,
        api_key=SecretStr(OPENROUTER_KEY),
        max_retries=0,
    )
    config = {"callbacks": [tracer]}
    if call == "invoke":
        message = await asyncio.to_thread(llm.invoke, QUESTION, config)
        assert isinstance(message, AIMessage)
        assert message.text
    else:
        pieces = [chunk.text async for chunk in llm.astream(QUESTION, config)]
        assert "".join(pieces)
    await asyncio.to_thread(flush, tracer, client)

    runs = zstd_langsmith_api.runs()
    root = assert_tree_is_consistent(runs)
    assert root["name"] == "ChatFusion"
    assert root["run_type"] == "llm"
    assert metadata(root)["ls_provider"] == "openai"  # the scripted server: not openrouter.ai
    assert metadata(root)["ls_model_name"] == "openrouter/fusion"

    children = [run for run in runs.values() if run.get("parent_run_id") == root["id"]]
    tools = [run for run in children if run["run_type"] == "tool"]
    assert [run["name"] for run in tools] == ["fusion"]
    tool_run = tools[0]
    # The outer model's answer, written from the deliberation, is the chat model's child too.
    outer_calls = [run for run in children if run["run_type"] == "llm"]
    assert [metadata(run)["ls_model_name"] for run in outer_calls] == [JUDGE]
    assert outer_calls[0]["start_time"] >= tool_run["end_time"]

    graphs = [run for run in runs.values() if run.get("parent_run_id") == tool_run["id"]]
    assert [(run["name"], run["run_type"]) for run in graphs] == [("fusion", "chain")]
    assert metadata(graphs[0])["fusion_panel"] == PANEL
    inner = {
        run["name"]: run
        for run in runs.values()
        if run["run_type"] == "llm" and tool_run in ancestors(run, runs)
    }
    expected_model = {"panel:panel-a": "panel-a", "panel:panel-b": "panel-b", "judge": JUDGE}
    assert set(inner) == set(expected_model)
    for name, run in inner.items():
        assert graphs[0] in ancestors(run, runs), name
        assert metadata(run)["ls_model_name"] == expected_model[name]
        assert metadata(run)["fusion_depth"] == 1

    assert_no_secret_posted(zstd_langsmith_api)
    assert_only_ingestion_endpoints(zstd_langsmith_api)
