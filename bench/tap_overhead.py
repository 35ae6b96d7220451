"""What the backend's response tap costs: CPU per call of `ChatOpenAICompatible` on the
backend's tapped clients against a plain `ChatOpenAI` on its own, the same requests to the
same scripted server in this process, interleaved so that the machine's noise falls on
both alike. A ratio, not a time: `.venv/bin/python -m bench.tap_overhead`.
"""

from __future__ import annotations

import statistics
import time

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

TOKENS = 300
ROUNDS = 60


def _cpu(model: BaseChatModel, streamed: bool) -> float:
    started = time.process_time()
    if streamed:
        for _ in model.stream("hi"):
            pass
    else:
        model.invoke("hi")
    return time.process_time() - started


def main() -> None:
    reply = " ".join(f"w{i}" for i in range(TOKENS))
    script = ModelScript(reply=reply, cost_per_token=0.001)
    with ScriptedOpenAIServer({"m": script}) as server:
        backend = OpenAICompatibleBackend(base_url=server.base_url, api_key="k", max_retries=0)
        tapped = backend.chat_model("m")
        plain = ChatOpenAI(
            model="m",
            base_url=server.base_url,
            api_key=SecretStr("k"),
            stream_usage=True,
            max_retries=0,
        )
        for streamed in (True, False):
            times: dict[str, list[float]] = {"tapped": [], "plain": []}
            for round_ in range(ROUNDS + 5):
                pair = [("tapped", tapped), ("plain", plain)]
                for name, model in pair if round_ % 2 else reversed(pair):
                    spent = _cpu(model, streamed)
                    if round_ >= 5:  # warm-up rounds are not counted
                        times[name].append(spent)
            ours, theirs = (statistics.median(times[k]) for k in ("tapped", "plain"))
            kind = "stream" if streamed else "invoke"
            print(
                f"{kind}, {TOKENS} tokens: CPU per call {ours * 1e3:.1f} ms tapped, "
                f"{theirs * 1e3:.1f} ms plain ChatOpenAI; ratio {ours / theirs:.2f}"
            )
        backend.close()


if __name__ == "__main__":
    main()
