"""Take the playground's screenshots in docs/ (desktop, phone, dark), on a scripted run.

    .venv/bin/python tests/playground_screenshots.py

Not a test: it makes the pictures the README shows, from the same scripted backend the
tests use, in Debian's Chromium (see tests/test_playground.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from langchain_core.tools import tool
from playwright.sync_api import expect, sync_playwright
from test_playground import CHROMIUM, CHROMIUM_ARGS
from test_server_support import QUALITY_JUDGE, healthy, settings, start

from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

DOCS = Path(__file__).resolve().parents[1] / "docs"
PANEL = ["anthropic/claude-sonnet-4.5", "openai/gpt-5", "google/gemini-2.5-pro"]
FAILING = "deepseek/deepseek-v3.2"
PROMPT = "Our city has $400M for transit. Should we build one tram line or bus rapid transit?"
REPLIES = {
    PANEL[0]: (
        "**Bus rapid transit (BRT) first**, for most cities of this size.\n\n"
        "- $400M buys roughly 25 km of BRT but only 6 to 8 km of tram.\n"
        "- BRT can open in 2 to 3 years; a tram line takes 6 to 10.\n"
        "- Ridership follows *frequency*, not vehicle type.\n\n"
        "A tram makes sense on one corridor already above 20,000 riders a day."
    ),
    PANEL[1]: (
        "It depends on the corridor.\n\n"
        "1. **Tram** if one corridor has very high demand and you want to steer development.\n"
        "2. **BRT** if demand is spread over several corridors.\n\n"
        "Trams cost less to *operate* per rider at high volumes, and raise land values "
        "along the line more than buses do."
    ),
    PANEL[2]: (
        "Build **BRT now, designed to convert**.\n\n"
        "Dedicated lanes, level boarding and signal priority give 80% of a tram's benefit. "
        "Keep the right-of-way wide enough that the busiest segment can later be upgraded "
        "to rail when ridership justifies it."
    ),
}
ANALYSIS = {
    "consensus": [
        "Dedicated right-of-way and high frequency matter more than the vehicle.",
        "$400M covers far more kilometres of BRT than of tram.",
    ],
    "contradictions": [
        {
            "topic": "Which mode serves riders better per dollar",
            "stances": [
                {"model": PANEL[0], "stance": "BRT: more coverage sooner, the same ridership."},
                {"model": PANEL[1], "stance": "Tram, on a corridor with very high demand."},
            ],
        }
    ],
    "partial_coverage": [
        {"models": [PANEL[1]], "point": "Trams lift land values and steer development."},
    ],
    "unique_insights": [
        {"model": PANEL[2], "insight": "Design BRT so that its busiest segment can become rail."},
    ],
    "blind_spots": ["No answer priced the disruption of construction for local businesses."],
}
RATES = {PANEL[0]: 1.5e-5, PANEL[1]: 1.0e-5, PANEL[2]: 0.6e-5, QUALITY_JUDGE: 2.5e-5}
"""USD per token each model reports, so that the page has costs to show."""
SEARCH = "BRT vs tram capital cost per km 2024"


@tool
def web_search(query: str) -> str:
    """Search the web (a stand-in: the screenshots make no network call)."""
    return f"Results for {query}: BRT $10M to $40M per km; tram $50M to $120M per km."


ANSWER = (
    "**Start with bus rapid transit, built to tram standards where it counts.**\n\n"
    "The panel agrees that dedicated lanes and frequency drive ridership, and that $400M "
    "goes three to four times further as BRT. Where they differ is one very busy corridor: "
    "there a tram can be cheaper to run per rider and lifts land values.\n\n"
    "1. Build 20 to 25 km of BRT with level boarding and signal priority.\n"
    "2. Reserve a rail-ready right-of-way on the busiest corridor.\n"
    "3. Convert it to tram once it passes ~20,000 riders a day.\n\n"
    "Budget for construction impacts on local businesses: no answer priced them."
)


def main() -> None:
    with ScriptedOpenAIServer(default=healthy()) as upstream:
        for model, reply in REPLIES.items():
            upstream.set_script(model, ModelScript(reply=reply, cost_per_token=RATES[model]))
        # One panelist searches before it answers: its column shows the step.
        upstream.set_script(
            PANEL[1],
            ModelScript(
                reply=REPLIES[PANEL[1]],
                cost_per_token=RATES[PANEL[1]],
                tool_calls=[{"name": "web_search", "arguments": {"query": SEARCH}}],
            ),
        )
        upstream.set_script(FAILING, ModelScript(status_code=429))
        upstream.set_script(
            QUALITY_JUDGE,
            ModelScript(json_reply=ANALYSIS, reply=ANSWER, cost_per_token=RATES[QUALITY_JUDGE]),
        )
        model_settings = {**settings(upstream), "research_tools": [web_search]}
        model_settings.pop("server_tools")  # research on, with the stand-in search
        with (
            start(upstream, model_settings=model_settings) as server,
            sync_playwright() as driver,
        ):
            url = server.base_url.removesuffix("v1")
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            shots = [
                ("playground-desktop.png", {"width": 1440, "height": 900}, "light", 2600),
                ("playground-phone.png", {"width": 390, "height": 844}, "light", 4200),
                ("playground-dark.png", {"width": 1440, "height": 900}, "dark", 2600),
            ]
            for name, viewport, scheme, height in shots:
                context = browser.new_context(
                    viewport=viewport, color_scheme=scheme, device_scale_factor=1
                )
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-ready=true]")
                page.get_by_label("Prompt").fill(PROMPT)
                for model in [*PANEL, FAILING]:
                    page.get_by_label("Add a panel model").fill(model)
                    page.get_by_label("Add a panel model").press("Enter")
                page.get_by_role("button", name="Run", exact=True).click()
                done = re.compile("^Done")
                expect(page.locator("#run-status")).to_have_text(done, timeout=30_000)
                page.locator("#prompt").blur()
                full = page.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": viewport["width"], "height": min(full, height)}
                page.screenshot(path=str(DOCS / name), clip=clip, full_page=True)
                print(DOCS / name, f"{viewport['width']}x{clip['height']}", file=sys.stderr)
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
