"""Which chat model answers: Claude when ANTHROPIC_API_KEY is set, else the offline model.

``app.services.llm.claude`` (the Anthropic SDK: seconds to import on a loaded host) is
imported when a Claude model is first made or by ``import_chat_sdk``, never with this
module: a colour that starts (a rollback) serves sooner.
"""

from __future__ import annotations

import importlib
from typing import Any

from app.core.config import Settings
from app.services.llm.base import ChatModel
from app.services.llm.offline import OfflineChatModel

_models: dict[tuple[Any, ...], ChatModel] = {}


async def close_chat_models() -> None:
    """Close the pooled HTTP connections to the model API (app shutdown)."""
    models = list(_models.values())
    _models.clear()
    for model in models:
        aclose = getattr(model, "aclose", None)  # Claude's client; the offline model has none
        if aclose is not None:
            await aclose()


def import_chat_sdk(settings: Settings) -> None:
    """Import the Anthropic SDK now if answers will need it (a background thread at
    start-up), so the first question does not wait for it on the event loop."""
    if settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value():
        importlib.import_module("app.services.llm.claude")


def get_chat_model(settings: Settings) -> ChatModel:
    """Claude when ANTHROPIC_API_KEY is set, else the offline model. One client per config,
    so HTTP connections to the API are pooled across requests."""
    if settings.anthropic_api_key is None or not settings.anthropic_api_key.get_secret_value():
        key: tuple[Any, ...] = ("offline",)
        if key not in _models:
            _models[key] = OfflineChatModel()
        return _models[key]
    key = (
        settings.anthropic_api_key.get_secret_value(),
        settings.anthropic_base_url,
        settings.chat_timeout_seconds,
        settings.chat_max_retries,
        settings.chat_retry_backoff_seconds,
    )
    if key not in _models:
        from app.services.llm.claude import AnthropicChatModel

        _models[key] = AnthropicChatModel(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout_seconds=settings.chat_timeout_seconds,
            max_retries=settings.chat_max_retries,
            retry_backoff_seconds=settings.chat_retry_backoff_seconds,
        )
    return _models[key]
