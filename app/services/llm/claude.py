"""Claude over the Messages API, streamed, with every SDK failure mapped to an LLMError.

The ``anthropic`` SDK is used directly (not LlamaIndex's wrapper) for the raw stream
events (token usage), retries only before the first token, typed SDK errors and closing
the response when the browser leaves; docs/ARCHITECTURE.md says more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator

import anthropic
import httpx

from app.services.llm.base import (
    LLMError,
    LLMEvent,
    LLMOverloaded,
    LLMRateLimited,
    LLMRejected,
    LLMStreamInterrupted,
    LLMTimeout,
    LLMUnavailable,
    ModelRequest,
    TextDelta,
    Usage,
)

logger = logging.getLogger(__name__)


_ERROR_TYPE_TO_CLASS: dict[str, type[LLMError]] = {
    "rate_limit_error": LLMRateLimited,
    "overloaded_error": LLMOverloaded,
    "api_error": LLMUnavailable,
    "timeout_error": LLMTimeout,
}


def _error_type(body: object) -> str | None:
    """Anthropic's error envelope: {"type": "error", "error": {"type": ..., "message": ...}}."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            value = inner.get("type")
            return value if isinstance(value, str) else None
    return None


def map_error(exc: BaseException) -> LLMError:
    """Turn an SDK exception into an LLMError a person can act on."""
    if isinstance(exc, anthropic.APITimeoutError | httpx.TimeoutException):
        return LLMTimeout("The model took too long to answer. Please try again.")
    if isinstance(exc, httpx.HTTPError):
        return LLMUnavailable("The connection to the model service broke off. Please try again.")
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMUnavailable(
            "The model service could not be reached. Check the server's network, then try again."
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = _error_type(exc.body)
        if status == 200:
            # `event: error` inside a 200 stream: the error type says what happened.
            cls = _ERROR_TYPE_TO_CLASS.get(kind or "", LLMStreamInterrupted)
            detail = {
                LLMOverloaded: "the model service is overloaded",
                LLMRateLimited: "the rate limit was reached",
            }.get(cls, "the model service reported an error")
            error: LLMError = LLMStreamInterrupted(
                f"The answer was interrupted because {detail}. Please try again in a moment."
            )
            error.kind = f"stream_interrupted:{kind or 'unknown'}"  # type: ignore[misc]
            return error
        if status == 429:
            error = LLMRateLimited(
                "The model's rate limit was reached. Please wait a minute and try again."
            )
            error.retry_after = _retry_after(exc.response)
            return error
        if status == 529 or kind == "overloaded_error":
            return LLMOverloaded(
                "The model service is overloaded right now. Please try again shortly."
            )
        if status in (401, 403):
            return LLMRejected(
                "The Anthropic API key was rejected. "
                "An administrator needs to check ANTHROPIC_API_KEY."
            )
        if status == 404:
            return LLMRejected("The chosen model is not available with this Anthropic account.")
        if status == 413:
            return LLMRejected("The question and its context are too large for the model.")
        if status >= 500:
            return LLMUnavailable(
                f"The model service had an internal error (HTTP {status}). Please try again."
            )
        return LLMRejected(f"The model service refused the request (HTTP {status}).")
    return LLMError(f"The model call failed unexpectedly ({type(exc).__name__}).")


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


# --- Claude ----------------------------------------------------------------------------------
class AnthropicChatModel:
    """Claude over the Messages API, streamed; retries with backoff only before the first token."""

    offline = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_seconds: float = 60.0,
        max_retries: int = 2,
        retry_backoff_seconds: float = 0.5,
        max_retry_wait_seconds: float = 10.0,
    ) -> None:
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.max_retry_wait_seconds = max_retry_wait_seconds
        # The SDK's own retries are off: ours know whether text already went out.
        # The read timeout bounds both "no answer at all" and "stalled mid-stream".
        # aiohttp as the HTTP transport (the SDK's documented option for concurrency):
        # its C parser reads the stream with a quarter less of the app's CPU than httpx.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            http_client=anthropic.DefaultAioHttpClient(),
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _backoff(self, attempt: int, error: LLMError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_wait_seconds)
        base = self.retry_backoff_seconds * (2**attempt)
        return min(base * (0.5 + random.random()), self.max_retry_wait_seconds)  # noqa: S311 (jitter)

    async def stream(self, request: ModelRequest) -> AsyncIterator[LLMEvent]:
        attempt = 0
        while True:
            sent_text = False
            try:
                async for event in self._stream_once(request):
                    if isinstance(event, TextDelta):
                        sent_text = True
                    yield event
                return
            # httpx errors: the SDK only wraps those of the initial request; a read
            # timeout or a dropped connection while iterating the stream comes raw.
            except (anthropic.APIError, httpx.HTTPError) as exc:
                error = map_error(exc)
                cause: BaseException = exc
            if sent_text or not error.retryable or attempt >= self.max_retries:
                raise error from cause
            delay = self._backoff(attempt, error)
            logger.warning(
                "model call failed before the first token (%s); retry %d/%d in %.2fs",
                error.kind,
                attempt + 1,
                self.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1

    async def _stream_once(self, request: ModelRequest) -> AsyncIterator[LLMEvent]:
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        # The SDK sends the request (auth, API version, status errors as exceptions) and
        # decodes the SSE; we read each event's JSON as a plain dict instead of letting it
        # build a pydantic model per event, which was a tenth of the app's CPU with 200
        # answers streaming at once. Leaving the `async with` closes the HTTP response,
        # including when the consumer stops or is cancelled: that stops the upstream stream.
        async with self._client.messages.with_streaming_response.create(
            model=request.model,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            system=request.system,
            messages=request.messages,  # type: ignore[arg-type]
            stream=True,
        ) as response:
            async for sse in anthropic.AsyncStream.raw_events(response.http_response):
                name = sse.event
                if name == "content_block_delta":
                    delta = sse.json()["delta"]
                    if delta.get("type") == "text_delta":
                        yield TextDelta(delta["text"])
                elif name == "message_start":
                    usage = sse.json()["message"]["usage"]
                    input_tokens = usage.get("input_tokens") or 0
                    output_tokens = usage.get("output_tokens") or 0
                elif name == "message_delta":
                    data = sse.json()
                    output_tokens = data["usage"].get("output_tokens") or output_tokens
                    stop_reason = data["delta"].get("stop_reason")
                elif name == "error":
                    # The API failed after it answered 200: the same exception the SDK's
                    # own stream raises, so map_error reads it the same way.
                    raise anthropic.APIStatusError(
                        sse.data, response=response.http_response, body=_json_or_text(sse.data)
                    )
        yield Usage(input_tokens=input_tokens, output_tokens=output_tokens, stop_reason=stop_reason)


def _json_or_text(data: str) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return data
