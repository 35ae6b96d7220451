"""The browser playground, in a real Chromium (Debian's `chromium`, driven by Playwright),
against `langchain-fusion serve` on the scripted backend, with a server key as a shared
deployment has one.

One browser and one server for the module; each test has a fresh browser context (its
own storage), and every request the page makes is recorded: none may leave the server.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import PANEL, QUALITY_JUDGE, healthy, serve_command
from wire_schema import sse_events

from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
expect.set_options(timeout=60_000)  # a wait, not a speed check: the machine may be busy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no Chromium on this machine (apt-get install -y chromium; .ci/run does)",
)
KEY = "sk-playground-server-key-0123456789"
PROMPT = "Should a city build a tram or more bus lanes?"
ANALYSIS: dict[str, Any] = {
    "consensus": ["Both options cut car traffic when service is frequent."],
    "contradictions": [
        {
            "topic": "Cost over 30 years",
            "stances": [
                {"model": PANEL[0], "stance": "The tram is cheaper per rider."},
                {"model": PANEL[1], "stance": "Bus lanes cost a fifth as much."},
            ],
        }
    ],
    "partial_coverage": [{"models": [PANEL[0]], "point": "Trams raise nearby land values."}],
    "unique_insights": [{"model": PANEL[1], "insight": "Bus lanes can be tried in a month."}],
    "blind_spots": ["Nobody priced the disruption of construction."],
}
ANSWER = (
    "Start with **bus lanes** now, and plan a tram for the busiest corridor once its "
    "ridership passes twenty thousand a day; until then, frequent buses in their own lanes "
    "carry the same riders for a fraction of the cost."
)
HOSTILE = (
    "Look: <script>window.__pwned = 'script'</script> and "
    "<img src=x onerror=\"window.__pwned = 'img'\"> end."
)


@dataclass
class Playground:
    url: str
    """The page (`/`), with a trailing slash."""
    upstream: ScriptedOpenAIServer
    browser: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Uncaught script errors of any page."""

    def page(self, *, key: str | None = KEY, bypass_csp: bool = False) -> Any:
        """A fresh context's page, with `key` already typed in this tab (sessionStorage);
        `bypass_csp` turns the page's Content-Security-Policy off (to test what it backs up)."""
        context = self.browser.new_context(
            viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp
        )
        origin = self.url.rstrip("/")
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        context.on("request", lambda request: self.requests.append(request.url))
        if key is not None:
            context.add_init_script(
                f"sessionStorage.setItem('langchain-fusion:server-key', {json.dumps(key)})"
            )
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.set_default_timeout(60_000)
        page.goto(self.url)
        page.wait_for_selector("body[data-ready=true]")
        return page

    def api(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.url}v1/{path}",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
            timeout=120,
        )


def script(upstream: ScriptedOpenAIServer, *, paced: bool = False, **answers: ModelScript) -> None:
    """Healthy models, the analyst with ANALYSIS and ANSWER; `paced` streams token by token
    (slower: only where a test watches text arrive)."""
    upstream.reset()
    pace = {"tokens_per_second": 300} if paced else {}
    for model in PANEL:
        upstream.set_script(model, healthy(**pace))
    upstream.set_script(QUALITY_JUDGE, healthy(json_reply=ANALYSIS, reply=ANSWER, **pace))
    for model, answer in answers.items():
        upstream.set_script(model, answer)


@pytest.fixture(scope="module")
def playground() -> Iterator[Playground]:
    with (
        ScriptedOpenAIServer(default=healthy()) as upstream,
        # With the local research tools (web_fetch; web_search has no provider here), as
        # `serve` runs by default: a panelist may take a research step.
        serve_command(upstream, "--server-key", KEY, lines=3, tools=True) as (base, said),
        playwright_sync.sync_playwright() as driver,
    ):
        assert f"Playground: {base.removesuffix('/v1')}/" in said
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Playground(base.removesuffix("v1"), upstream, browser)
        finally:
            browser.close()


@pytest.fixture
def site(playground: Playground) -> Iterator[Playground]:
    """The module's playground, with healthy scripts; no request may leave the server."""
    script(playground.upstream)
    playground.requests.clear()
    playground.errors.clear()
    yield playground
    outside = [u for u in playground.requests if not u.startswith(playground.url)]
    assert not outside, outside
    assert not playground.errors
    for context in playground.browser.contexts:
        context.close()


def run(page: Any, prompt: str = PROMPT) -> None:
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#run-status")).to_have_text(re.compile("^Done"), timeout=90_000)


def column(page: Any, model: str) -> Any:
    return page.locator(f"#columns article[data-model='{model}']")


def test_a_run_fills_every_column_the_analysis_and_the_streamed_answer(site: Playground) -> None:
    script(site.upstream, paced=True)
    page = site.page()
    # Record each length the answer had: it must grow in steps, not appear at once.
    page.evaluate(
        """() => { window.__lengths = [];
        new MutationObserver(() => window.__lengths.push(
            document.querySelector('#answer').textContent.length))
        .observe(document.querySelector('#answer'), {childList: true, subtree: true}); }"""
    )
    run(page)
    for model in PANEL:
        (request,) = site.upstream.requests_for(model)
        assert column(page, model).locator(".state").text_content() == "done"
        body = column(page, model).locator(".column-body").inner_text()
        assert " ".join(body.split()) == " ".join(request.response_text.split())
        assert "word" in column(page, model).locator(".column-meta").text_content()
    titles = page.locator(".analysis-section h3").all_text_contents()
    assert titles == [
        "Consensus",
        "Contradictions",
        "Partial coverage",
        "Unique insights",
        "Blind spots",
    ]
    analysis = page.locator("#analysis")
    assert ANALYSIS["consensus"][0] in analysis.inner_text()
    stances = page.locator(".contradictions .stance")
    assert stances.count() == 2
    assert stances.nth(0).inner_text().split("\n")[0] == PANEL[0]
    assert "Bus lanes cost a fifth as much." in stances.nth(1).inner_text()
    assert ANALYSIS["blind_spots"][0] in analysis.inner_text()
    # An insight names its model's column, and focusing it highlights that column.
    page.mouse.move(0, 0)  # off every finding: hovering one highlights its columns too
    page.locator(".unique_insights .finding").focus()
    assert "highlight" in (column(page, PANEL[1]).get_attribute("class") or "")
    assert "highlight" not in (column(page, PANEL[0]).get_attribute("class") or "")
    assert page.locator("#answer strong").text_content() == "bus lanes"
    assert " ".join(page.locator("#answer").inner_text().split()) == ANSWER.replace("**", "")
    lengths = page.evaluate("window.__lengths")
    assert len(set(lengths)) >= 3, lengths  # streamed in, not set once
    assert page.locator("#analyst-name").text_content() == f"by {QUALITY_JUDGE}"
    assert "2 of 2 panelists answered" in page.locator("#usage").text_content()
    for region in ("#answer", "#analysis", "#columns article .column-body"):
        assert page.locator(region).first.get_attribute("aria-live") == "polite"


def test_a_failed_panelist_shows_its_reason_next_to_the_others(
    site: Playground, tmp_path: Path
) -> None:
    site.upstream.set_script(PANEL[1], ModelScript(status_code=429))
    page = site.page()
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Prompt").press("Control+Enter")  # the keyboard runs it too
    expect(page.locator("#run-status")).to_have_text(re.compile("^Done"), timeout=90_000)
    failed = column(page, PANEL[1])
    assert failed.locator(".state").text_content() == "failed"
    reason = failed.locator(".failure").inner_text()
    assert reason.startswith("429")
    assert "scripted failure: 429" in reason
    assert column(page, PANEL[0]).locator(".state").text_content() == "done"
    assert "1 of 2 panelists answered" in page.locator("#usage").text_content()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download result JSON").click()
    saved = tmp_path / "result.json"
    download.value.save_as(saved)
    result = json.loads(saved.read_text())
    assert result["status"] == "ok"
    assert result["analysis"] == ANALYSIS
    assert [r["model"] for r in result["responses"]] == [PANEL[0]]
    (failure,) = result["failed_models"]
    assert (failure["model"], failure["status_code"]) == (PANEL[1], 429)


def test_the_page_asks_for_the_key_and_keeps_it_in_the_tab_only(site: Playground) -> None:
    page = site.page(key=None)
    assert page.get_by_label("Server key").is_visible()
    assert page.locator("#server-status").text_content() == "This server needs a key"
    page.get_by_label("Server key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#server-status")).to_have_attribute("data-state", "ok")
    assert page.locator("#model option").all_text_contents() == [
        "openrouter/fusion",
        "openrouter/fusion-flash",
    ]  # from GET /v1/models, which answers only with the key
    stored = page.evaluate(
        "() => [sessionStorage.getItem('langchain-fusion:server-key'),"
        " JSON.stringify(localStorage)]"
    )
    assert stored[0] == KEY
    assert KEY not in stored[1]  # the history holds no key
    assert all(KEY not in url for url in site.requests)


def test_history_survives_a_reload_and_reopens_a_run(site: Playground) -> None:
    page = site.page()
    run(page)
    first = column(page, PANEL[0]).locator(".column-body").inner_text()
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#watch").is_hidden()
    entries = page.locator("#history-list .history-item")
    assert entries.count() == 1
    assert PROMPT in entries.first.inner_text()
    entries.first.click()
    assert column(page, PANEL[0]).locator(".column-body").inner_text() == first
    assert page.get_by_label("Prompt").input_value() == PROMPT
    assert " ".join(page.locator("#answer").inner_text().split()) == ANSWER.replace("**", "")
    assert page.locator(".analysis-section").count() == 5
    # Readable at phone width (nothing wider than the screen) and dark when asked.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (
        sum(map(int, re.findall(r"\d+", dark)[:3]))
        < 100
        < sum(map(int, re.findall(r"\d+", light)[:3]))
    )
    page.get_by_role("button", name="Clear").click()
    assert entries.count() == 0
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#history-list .history-item").count() == 0


def test_copy_as_request_gives_json_the_server_accepts(site: Playground) -> None:
    fast = PRESETS["general-fast"]
    page = site.page()
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Preset").select_option("general-fast")  # fills the panel and analyst
    assert page.locator("#chips .chip span").all_text_contents() == list(fast.analysis_models)
    assert page.get_by_label("Analyst").input_value() == fast.model
    for model in fast.analysis_models:
        page.get_by_role("button", name=f"Remove {model}").click()
    page.get_by_label("Analyst").fill("")
    page.get_by_label("Add a panel model").fill(PANEL[1])
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_label("Add a panel model").fill(PANEL[1])
    page.get_by_label("Add a panel model").press("Enter")  # a repeat: two seats
    page.get_by_label("max_tool_calls").fill("2")
    page.get_by_role("button", name="Copy as request").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.get_by_label("Request JSON").input_value()
    for api, path in [("responses", "responses"), ("chat", "chat/completions")]:
        page.get_by_label("API").select_option(api)
        body = json.loads(page.get_by_label("Request JSON").input_value())
        (tool,) = body["tools"]
        assert tool == {
            "type": "openrouter:fusion",
            "parameters": {"analysis_models": [PANEL[1], PANEL[1]], "max_tool_calls": 2},
        }
        assert page.locator("#request-url").text_content() == f"POST {site.url}v1/{path}"
        site.upstream.reset()
        response = site.api(path, body)
        assert response.status_code == 200, response.text
        assert len(site.upstream.requests_for(PANEL[1])) == 2  # the panel the JSON named ran
        assert site.upstream.requests_for(PANEL[0]) == []
    page.get_by_label("For").select_option("hosted")
    assert page.locator("#request-url").text_content() == (
        "POST https://openrouter.ai/api/v1/chat/completions"
    )


def test_model_html_is_shown_as_text_and_runs_nothing(site: Playground) -> None:
    hostile_analysis = {**ANALYSIS, "consensus": [HOSTILE]}
    script(
        site.upstream,
        **{
            PANEL[0]: healthy(reply=HOSTILE + "\n\n[link](javascript:alert(1))"),
            QUALITY_JUDGE: healthy(json_reply=hostile_analysis, reply=HOSTILE),
        },
    )
    # Without the page's CSP, so that only the rendering stands between the text and a run.
    page = site.page(bypass_csp=True)
    run(page)
    assert page.evaluate("window.__pwned") is None
    for region in ("#columns", "#analysis", "#answer"):
        box = page.locator(region)
        assert box.locator("script, img, iframe").count() == 0
        assert "<img src=x onerror=" in box.inner_text()
        assert "<script>window.__pwned" in box.inner_text()
    body = column(page, PANEL[0]).locator(".column-body")
    assert body.locator("a").count() == 0  # a javascript: link stays text
    assert "[link](javascript:alert(1))" in body.inner_text()
    assert page.evaluate("window.__pwned") is None


def test_the_page_and_its_files_are_served_safely(site: Playground) -> None:
    page = httpx.get(site.url, timeout=10)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script_file = httpx.get(f"{site.url}playground/app.js", timeout=10)
    assert script_file.headers["content-type"].startswith("text/javascript")
    missing = httpx.get(f"{site.url}playground/..%2Fapp.py", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404
    # The page is public, the API is not: without the key, the page gets nothing.
    assert httpx.get(f"{site.url}v1/models", timeout=10).status_code == 401


# --- tokens, cost and research, as they arrive ----------------------------------------------

RATES = {PANEL[0]: 1e-6, PANEL[1]: 4e-6, QUALITY_JUDGE: 2e-6}
"""USD per token each model reports (`usage.cost`); PANEL[0] is the cheap panelist."""
SOURCE = "http://127.0.0.1:9/tram-ridership"
"""What the researching panelist fetches: a loopback address, which `web_fetch` refuses
before any connection (the step is taken all the same, and nothing leaves the machine)."""


def value(locator: Any) -> float:
    """A figure's exact value (`data-value`), checked to be shown as text too."""
    assert locator.count() == 1  # now: the run is done, nothing is still to come
    assert locator.inner_text().strip()
    return float(locator.get_attribute("data-value"))


def priced(upstream: ScriptedOpenAIServer, rates: dict[str, float | None]) -> None:
    """Every model answers as `script` has it, reporting `rates` (None: no cost)."""
    upstream.reset()
    for model in PANEL:
        upstream.set_script(model, ModelScript(cost_per_token=rates[model]))
    upstream.set_script(
        QUALITY_JUDGE,
        ModelScript(json_reply=ANALYSIS, reply=ANSWER, cost_per_token=rates[QUALITY_JUDGE]),
    )


def test_columns_show_tokens_and_cost_and_the_usage_line_splits_them_by_stage(
    site: Playground,
) -> None:
    priced(site.upstream, RATES)
    page = site.page()
    run(page)
    assert {r.model for r in site.upstream.requests} == {*PANEL, QUALITY_JUDGE}
    cost = {}
    for model in PANEL:
        meta = column(page, model).locator(".column-meta")
        tokens = value(meta.locator(".tokens"))
        cost[model] = value(meta.locator(".cost"))
        assert tokens > 0
        assert cost[model] == pytest.approx(tokens * RATES[model])  # the model's own bill
        assert meta.locator(".cost").inner_text().startswith("$")
        assert meta.locator(".time").inner_text().endswith(" s")
    stage = {
        name: page.locator(f"#usage [data-stage={name}]")
        for name in ("panel", "analysis", "synthesis", "total")
    }
    figures = {
        name: (value(box.locator(".tokens")), value(box.locator(".cost")))
        for name, box in stage.items()
    }
    columns = [value(column(page, m).locator(".column-meta .tokens")) for m in PANEL]
    assert figures["panel"] == (sum(columns), pytest.approx(sum(cost.values())))
    for name in ("analysis", "synthesis"):  # the analyst wrote both (the server's default)
        tokens, spent = figures[name]
        assert tokens > 0
        assert spent == pytest.approx(tokens * RATES[QUALITY_JUDGE])
    total_tokens, total_cost = figures["total"]
    stages = ("panel", "analysis", "synthesis")
    assert total_tokens == sum(figures[n][0] for n in stages)
    assert total_cost == pytest.approx(sum(figures[n][1] for n in stages))
    ratio = page.locator("#usage .ratio")
    assert ratio.get_attribute("data-model") == PANEL[0] == min(cost, key=cost.__getitem__)
    times = total_cost / cost[PANEL[0]]
    assert ratio.inner_text() == f"{times:.1f}× the cost of one completion of {PANEL[0]}"
    assert value(ratio) == pytest.approx(times)
    usage_line = page.locator("#usage").inner_text()
    page.reload()  # a run reopened from the history shows the same figures
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#history-list .history-item").first.click()
    assert page.locator("#usage").inner_text() == usage_line
    assert value(column(page, PANEL[1]).locator(".column-meta .cost")) == cost[PANEL[1]]


def test_the_streamed_response_completed_carries_the_cost_when_every_model_reports_one(
    site: Playground,
) -> None:
    same = dict.fromkeys(RATES, 2e-6)
    priced(site.upstream, same)
    body = {"model": "openrouter/fusion", "input": PROMPT, "tool_choice": "required"}

    def completed() -> dict[str, Any]:
        response = site.api("responses", {**body, "stream": True})
        assert response.status_code == 200, response.text
        events, _ = sse_events(response.text)
        last = json.loads(events[-1][1])
        assert last["type"] == "response.completed"
        usage: dict[str, Any] = last["response"]["usage"]
        return usage

    usage = completed()
    assert usage["cost"] == pytest.approx(usage["total_tokens"] * 2e-6)  # every call's bill
    priced(site.upstream, {**same, PANEL[1]: None})  # one model reports no cost
    assert "cost" not in completed()  # a partial sum is no cost
    # The page then shows tokens where it cannot show cost, and compares by tokens.
    page = site.page()
    run(page)
    assert column(page, PANEL[1]).locator(".column-meta .cost").count() == 0
    assert value(column(page, PANEL[1]).locator(".column-meta .tokens")) > 0
    assert page.locator("#usage [data-stage=total] .cost").count() == 0
    assert page.locator("#usage [data-stage=panel] .cost").count() == 0
    assert value(page.locator("#usage [data-stage=total] .tokens")) > 0
    ratio = page.locator("#usage .ratio")
    assert ratio.get_attribute("data-by") == "tokens"
    assert " the tokens of one completion of " in ratio.inner_text()


def test_a_panelist_researching_shows_it_in_its_column(site: Playground) -> None:
    site.upstream.set_script(
        PANEL[0],
        healthy(tool_calls=[{"name": "web_fetch", "arguments": {"url": SOURCE}}]),
    )
    page = site.page()
    # Every state each column shows, in order (a state is set on the page at once).
    page.evaluate(
        """() => { window.__states = {};
        new MutationObserver((records) => { for (const r of records) {
            const node = r.target;
            if (!node.matches || !node.matches('article.column')) continue;
            (window.__states[node.dataset.model] ||= []).push(node.dataset.state); } })
        .observe(document.querySelector('#columns'),
                 {subtree: true, attributes: true, attributeFilter: ['data-state']}); }"""
    )
    run(page)
    first, second = site.upstream.requests_for(PANEL[0])  # the step, then the answer
    assert [t["function"]["name"] for t in first.body["tools"]] == ["web_fetch"]
    assert second.body["messages"][-1]["role"] == "tool"  # the step ran (and was refused)
    states = page.evaluate("window.__states")
    assert "researching" in states[PANEL[0]]
    assert states[PANEL[0]].index("researching") < states[PANEL[0]].index("done")
    assert states[PANEL[0]][-1] == "done"
    assert "researching" not in states[PANEL[1]]  # it answered on its first turn
    step = column(page, PANEL[0]).locator(".research-step")
    assert step.count() == 1
    assert step.locator(".tool").inner_text() == "web_fetch"
    assert step.locator(".query").inner_text() == SOURCE
    assert column(page, PANEL[1]).locator(".research-step").count() == 0
