"""The `openrouter/fusion` model alias as a LangChain chat model (`ChatFusion`)."""

from langchain_fusion.chat_models.fusion import FUSION_ALIASES, ChatFusion

__all__ = ["FUSION_ALIASES", "ChatFusion"]
