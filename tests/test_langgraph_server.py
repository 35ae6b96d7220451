"""`langgraph dev` serves the fusion graph of `langgraph.json`, offline, on loopback.

The server runs as a subprocess (its own process group, killed at the end) with the
fusion backend pointed at a scripted OpenAI-compatible server in this process
(`OPENROUTER_BASE_URL`), and is driven through `langgraph-sdk`. Its working directory is a
temporary folder holding the repository's `langgraph.json`, unchanged, and a link to the
package, so that the in-memory server's state (`.langgraph_api/`) is written there and not
in the repository. Offline: no browser, no CLI analytics, no version check, no tracing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.pregel import Pregel
from langgraph_sdk import get_client

import langchain_fusion
from langchain_fusion import FusionParameterError, FusionResult
from langchain_fusion.backends import DEPTH_HEADER
from langchain_fusion.contract import events
from langchain_fusion.deployment import graph_from_env, parameters_from_env
from langchain_fusion.testing import ScriptedOpenAIServer

REPOSITORY = Path(__file__).resolve().parent.parent
LANGGRAPH_JSON = REPOSITORY / "langgraph.json"
PACKAGE_DIR = Path(langchain_fusion.__file__).resolve().parent
PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
BACKEND_KEY = "sk-or-v1-FAKE-langgraph-server-test"
PARAMETERS = {"type": "openrouter:fusion", "parameters": {"analysis_models": PANEL, "model": JUDGE}}
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 60.0


# -- the configuration and the module it names ------------------------------------------


def test_langgraph_json_serves_the_deployment_graph() -> None:
    cli_config = pytest.importorskip("langgraph_cli.config", reason="needs langgraph-cli")
    config = cli_config.validate_config_file(LANGGRAPH_JSON)
    assert config["dependencies"] == ["."]
    assert config["graphs"] == {"fusion": "./langchain_fusion/deployment.py:make_graph"}
    path, _, variable = config["graphs"]["fusion"].partition(":")
    assert (REPOSITORY / path).resolve() == PACKAGE_DIR / "deployment.py"
    assert variable == "make_graph"


def test_parameters_come_from_the_hosted_json() -> None:
    assert parameters_from_env({}).analysis_models is None  # the preset's panel
    loaded = parameters_from_env({"FUSION_PARAMETERS": json.dumps(PARAMETERS)})
    assert loaded.analysis_models == PANEL
    assert loaded.model == JUDGE
    bare = parameters_from_env({"FUSION_PARAMETERS": '{"preset": "general-fast"}'})
    assert bare.preset == "general-fast"


@pytest.mark.parametrize(
    "raw", ["{not json", '{"max_tool_calls": 99}', '{"type": "openrouter:web_search"}']
)
def test_bad_parameters_refuse_to_build(raw: str) -> None:
    with pytest.raises(FusionParameterError):
        graph_from_env({"FUSION_PARAMETERS": raw})


def test_graph_from_env_runs_on_the_configured_endpoint(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_from_env(
        {
            "OPENROUTER_BASE_URL": scripted_server.base_url,
            "OPENROUTER_API_KEY": BACKEND_KEY,
            "FUSION_PARAMETERS": json.dumps(PARAMETERS),
        }
    )
    output = graph.invoke({"messages": [("user", "Why is the sky blue?")]})

    assert graph.name == "fusion"
    result: FusionResult = output["result"]
    assert [response.model for response in result.responses] == PANEL
    assert output["answer"]
    assert {request.model for request in scripted_server.requests} == {*PANEL, JUDGE}
    for request in scripted_server.requests:
        assert request.headers["authorization"] == f"Bearer {BACKEND_KEY}"


def test_the_factory_builds_the_graph_on_first_use_and_reuses_it() -> None:
    import importlib

    from langchain_fusion import deployment

    deployment = importlib.reload(deployment)  # a fresh import builds nothing
    assert deployment._environment_graph.cache_info().currsize == 0
    graph = deployment.make_graph({"configurable": {}})
    assert isinstance(graph, Pregel)
    assert graph.name == "fusion"
    assert set(graph.get_input_jsonschema()["properties"]) == {"messages"}
    assert {"result", "answer"} <= set(graph.get_output_jsonschema()["properties"])
    assert deployment.make_graph() is graph  # built once
    assert deployment.graph is graph  # the old module attribute, on first access


# -- the server ---------------------------------------------------------------------------


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    models: ScriptedOpenAIServer

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_environment(models: ScriptedOpenAIServer) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENROUTER_", "LANGSMITH_", "LANGCHAIN_", "FUSION_", "OPENAI_"))
    }
    environment.update(
        OPENROUTER_BASE_URL=models.base_url,
        OPENROUTER_API_KEY=BACKEND_KEY,
        FUSION_PARAMETERS=json.dumps(PARAMETERS),
        # Offline: no CLI analytics, no PyPI version check, no LangSmith tracing.
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    return environment


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group, then make sure nothing of it is left."""
    group = process.pid  # start_new_session: the group id is the leader's pid
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)


@pytest.fixture(scope="module")
def langgraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The in-memory server (`langgraph-cli[inmem]`) needs Python 3.11 or later.
    pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (Python >= 3.11)")
    workdir = tmp_path_factory.mktemp("langgraph-dev")
    (workdir / "langgraph.json").write_bytes(LANGGRAPH_JSON.read_bytes())
    (workdir / "langchain_fusion").symlink_to(PACKAGE_DIR, target_is_directory=True)
    log = workdir / "server.log"
    port = _free_port()
    with ScriptedOpenAIServer() as models, log.open("wb") as output:
        command = [
            sys.executable,
            "-m",
            "langgraph_cli",
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
        ]
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_server_environment(models),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = RunningServer(f"http://127.0.0.1:{port}", process, log, models)
        try:
            _wait_until_ready(server)
            yield server
        finally:
            _stop(process)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ok", timeout=2.0)


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"langgraph dev exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/ok", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"langgraph dev was not ready in {STARTUP_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _client(server: RunningServer) -> Any:
    return get_client(url=server.url, api_key=None, timeout=RUN_TIMEOUT_S)


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def assert_progress_in_order(progress: list[dict[str, Any]]) -> None:
    """The contract's order: announced, each panelist streams then completes, then the judge."""
    types = [event["type"] for event in progress]
    assert types[0] == events.IN_PROGRESS
    assert types[-1] == events.COMPLETED
    assert types.count(events.COMPLETED) == 1
    analysis_started = types.index(events.ANALYSIS_IN_PROGRESS)
    assert analysis_started < types.index(events.ANALYSIS_COMPLETED) < len(types) - 1
    for model in PANEL:
        own = [i for i, event in enumerate(progress) if event.get("model") == model]
        kinds = [types[i] for i in own]
        assert kinds[0] == events.PANEL_ADDED, model
        assert kinds[-1] == events.PANEL_COMPLETED, model
        assert set(kinds[1:-1]) == {events.PANEL_DELTA}, model
        assert own[-1] < analysis_started, model
        deltas = "".join(progress[i]["delta"] for i in own[1:-1])
        assert deltas == progress[own[-1]]["content"], model


def assert_final_state(state: dict[str, Any]) -> None:
    result = FusionResult.model_validate(state["result"])
    assert result.status == "ok"
    assert [response.model for response in result.responses] == PANEL
    assert result.analysis is not None
    assert set(state["result"]["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    assert state["answer"]
    assert state["messages"][-1]["type"] == "ai"
    assert state["messages"][-1]["content"] == state["answer"]


async def test_server_lists_the_fusion_graph(langgraph_server: RunningServer) -> None:
    assistants = await _client(langgraph_server).assistants.search(graph_id="fusion")
    assert [assistant["graph_id"] for assistant in assistants] == ["fusion"]


async def test_run_streams_progress_then_the_result(langgraph_server: RunningServer) -> None:
    langgraph_server.models.reset()
    progress: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    async for part in _client(langgraph_server).runs.stream(
        None,
        "fusion",
        input=_user("Where do economists disagree on carbon taxes?"),
        stream_mode=["custom", "values"],
    ):
        assert part.event != "error", part.data
        if part.event == "custom":
            progress.append(part.data)
        elif part.event == "values":
            states.append(part.data)

    assert_progress_in_order(progress)
    assert_final_state(states[-1])
    # `completed` carries the judge's result; the synthesis then adds its own usage.
    announced, final = dict(progress[-1]["result"]), dict(states[-1]["result"])
    assert announced.pop("usage")["synthesis"]["total_tokens"] == 0
    assert final.pop("usage")["synthesis"]["total_tokens"] > 0
    assert announced == final
    # FUSION_PARAMETERS and the backend settings reached the server's graph.
    requests = langgraph_server.models.requests
    assert {request.model for request in requests} == {*PANEL, JUDGE}
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {BACKEND_KEY}"
    inner = [request for request in requests if DEPTH_HEADER in request.headers]
    assert len(inner) == len(PANEL) + 1  # the panel and the judge, not the synthesis


async def test_thread_keeps_the_conversation(langgraph_server: RunningServer) -> None:
    client = _client(langgraph_server)
    thread = await client.threads.create()
    for question in ("What causes tides?", "And why two a day?"):
        async for part in client.runs.stream(
            thread["thread_id"], "fusion", input=_user(question), stream_mode="values"
        ):
            assert part.event != "error", part.data

    state = (await client.threads.get_state(thread["thread_id"]))["values"]
    assert [message["type"] for message in state["messages"]] == ["human", "ai"] * 2
    assert state["messages"][2]["content"] == "And why two a day?"
    # The checkpointed state (custom types included) reads back.
    assert FusionResult.model_validate(state["result"]).status == "ok"
    assert state["answer"] == state["messages"][-1]["content"]


async def test_each_turn_of_a_thread_deliberates_afresh(langgraph_server: RunningServer) -> None:
    client = _client(langgraph_server)
    thread = await client.threads.create()
    results = []
    for question in ("What causes tides?", "And why two a day?"):
        final: dict[str, Any] = {}
        async for part in client.runs.stream(
            thread["thread_id"], "fusion", input=_user(question), stream_mode="values"
        ):
            final = part.data
        results.append(FusionResult.model_validate(final["result"]))

    assert [len(result.responses) for result in results] == [len(PANEL), len(PANEL)]
    assert all("why two a day" in r.content.lower() for r in results[1].responses)
