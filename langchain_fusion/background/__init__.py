"""An ASGI app under uvicorn in a background thread (`server.py`): the scripted test
server, `FusionServer` in notebooks and tests, and the socket helpers of
`langchain-fusion mcp --http`.

Imports uvicorn and starlette: import it only from modules that need the ``testing`` or
``server`` extra, never from `langchain_fusion` itself or the CLI's top level.
"""

from langchain_fusion.background.server import BackgroundServer, LoopSetting, bind_socket, http_url

__all__ = ["BackgroundServer", "LoopSetting", "bind_socket", "http_url"]
