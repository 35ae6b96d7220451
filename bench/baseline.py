"""The hand-written ensemble that `ChatFusion` is measured against.

What someone writes without this package: one `openai.AsyncOpenAI` client, the panel's
calls in parallel with `asyncio.gather`, then the judge with `response_format:
json_schema` (`json.loads` on the reply), then the outer call that writes the answer from
the analysis. The same models, the same number of requests, the same depth header, prompts
of the same size as the graph's, and the same streaming flags: the harness reads which
calls the graph streams (from the server's log) and sets `stream_panel` / `stream_outer`
to match.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.messages import BaseMessage, BaseMessageChunk, HumanMessage, SystemMessage

from langchain_fusion.contract.result import AnalysisLimits, FusionAnalysis, PanelResponse
from langchain_fusion.graph import FusionSetup
from langchain_fusion.graph.prompts import JUDGE_SYSTEM_PROMPT, judge_request, synthesis_request

DEPTH_HEADERS = {"x-openrouter-fusion-depth": "1"}


@dataclass
class BareEnsemble:
    """N panel calls in parallel, a JSON judge, an outer call: plain SDK code."""

    client: openai.AsyncOpenAI
    panel: Sequence[str]
    judge: str
    outer: str
    schema: dict[str, Any]
    stream_panel: bool = True
    """Streamed panel calls; the harness sets what the graph does, to send the same calls."""
    stream_outer: bool = True

    @classmethod
    def create(
        cls, base_url: str, api_key: str, panel: Sequence[str], judge: str, outer: str
    ) -> BareEnsemble:
        """One client (one connection pool) for every call, as the graph has."""
        client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        return cls(client, list(panel), judge, outer, AnalysisLimits().json_schema())

    async def _call(
        self,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool,
        headers: dict[str, str] | None = None,
    ) -> str:
        # Typed loosely: the SDK's overloads cannot follow a `stream` known only at run time.
        completions: Any = self.client.chat.completions
        if not stream:
            completion = await completions.create(
                model=model, messages=messages, extra_headers=headers
            )
            return str(completion.choices[0].message.content or "")
        chunks = await completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        parts: list[str] = []
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    async def _panelist(self, model: str, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return await self._call(model, messages, self.stream_panel, DEPTH_HEADERS)

    async def _judge(self, prompt: str, answers: Sequence[tuple[str, str]]) -> Any:
        responses = "\n\n".join(
            f'<response model="{model}" id="{index}">\n{answer}\n</response>'
            for index, (model, answer) in enumerate(answers, start=1)
        )
        content = f"<request>\n{prompt}\n</request>\n\n{responses}"
        completion = await self.client.chat.completions.create(
            model=self.judge,
            messages=[
                {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                {"role": "user", "content": content},
            ],
            temperature=0.0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "FusionAnalysis", "schema": self.schema},
            },
            extra_headers=DEPTH_HEADERS,
        )
        return json.loads(completion.choices[0].message.content or "null")

    async def deliberate(self, prompt: str) -> str:
        """Panel, judge, outer: returns the final answer."""
        answers = await asyncio.gather(*(self._panelist(m, prompt) for m in self.panel))
        pairs = list(zip(self.panel, answers, strict=True))
        analysis = await self._judge(prompt, pairs)
        briefing = json.dumps(
            {
                "analysis": analysis,
                "responses": [{"model": m, "content": a} for m, a in pairs],
            }
        )
        messages = [
            {"role": "user", "content": prompt},
            {
                "role": "user",
                "content": f"A panel answered; here is their analysis:\n{briefing}\n"
                "Write the final answer.",
            },
        ]
        return await self._call(self.outer, messages, self.stream_outer)

    async def aclose(self) -> None:
        await self.client.close()


@dataclass
class LangChainEnsemble:
    """The graph's calls without the graph: the configured LangChain models of a
    `FusionSetup` (the same runnables the nodes call), chained by hand.

    Between the bare SDK and the graph, it tells the LangChain model layer's cost apart
    from LangGraph's and the `ChatFusion` wrapper's.
    """

    setup: FusionSetup
    stream_panel: bool = True
    stream_outer: bool = True

    @staticmethod
    async def _call(model: Any, messages: list[BaseMessage], stream: bool) -> BaseMessage | None:
        if not stream:
            reply = await model.ainvoke(messages)
            return reply if isinstance(reply, BaseMessage) else None
        message: BaseMessageChunk | None = None
        async for chunk in model.astream(messages):
            message = chunk if message is None else message + chunk
        return message

    async def _panelist(self, index: int, messages: list[BaseMessage]) -> PanelResponse:
        seat = self.setup.panel[index]
        message = await self._call(seat.model, messages, self.stream_panel)
        return PanelResponse(model=seat.label, content=message.text if message else "")

    async def deliberate(self, prompt: str) -> str:
        setup = self.setup
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        responses = await asyncio.gather(
            *(self._panelist(seat.index, messages) for seat in setup.panel)
        )
        output = await setup.judges[0].structured.ainvoke(
            [SystemMessage(JUDGE_SYSTEM_PROMPT), HumanMessage(judge_request(messages, responses))]
        )
        analysis = FusionAnalysis.model_validate(output["parsed"])
        request = HumanMessage(synthesis_request(analysis, responses))
        final = await self._call(setup.synthesizer, [*messages, request], self.stream_outer)
        return final.text if final else ""
