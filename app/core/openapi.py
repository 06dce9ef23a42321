"""The OpenAPI schema says every answer an operation can give.

FastAPI documents what each route declares; some answers come from elsewhere and
are added here, for every operation at once, so a new route cannot forget them:

* 401 on every operation that needs a token (the bearer dependency);
* 400 (a body that is not UTF-8 JSON or not readable multipart), 413 (the body
  limit, ``app.core.body_limit``) and 422 on every operation that takes a body;
* 503 with Retry-After (Postgres unreachable, ``app.core.db.DatabaseUnavailable``) on
  every operation with a token or a body: those are the ones that reach the database
  (health, version, client config and the plan list do not);
* the allowed values of fields whose choices are a setting (the chat models):
  a schema field marked with ``setting_enum("chat_allowed_models")`` gets
  ``enum: CHAT_ALLOWED_MODELS`` of this installation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.core.config import Settings

SETTING_ENUM_KEY = "x-enum-from-setting"
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}
_ERROR_DETAIL_SCHEMA = {
    "type": "object",
    "title": "ErrorDetail",
    "required": ["detail"],
    "properties": {"detail": {"title": "Detail"}},
}
_WITH_TOKEN = {
    "401": {"description": "No token, or an invalid or expired one", "content": _ERROR_BODY}
}
_DATABASE_UNAVAILABLE = {
    "description": "The database is not reachable (a restart): retry after Retry-After seconds",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DatabaseUnavailable"}}
    },
}
_DATABASE_UNAVAILABLE_SCHEMA = {
    "type": "object",
    "title": "DatabaseUnavailable",
    "required": ["detail", "kind", "retryable"],
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "kind": {"type": "string", "title": "Kind"},
        "retryable": {"type": "boolean", "title": "Retryable"},
    },
}
_WITH_BODY = {
    "400": {"description": "The body cannot be read (not UTF-8, broken multipart)"},
    "413": {"description": "The body is over the size limit", "content": _ERROR_BODY},
}


def setting_enum(setting: str) -> dict[str, str]:
    """``json_schema_extra`` for a field whose allowed values are the list ``setting``."""
    return {SETTING_ENUM_KEY: setting}


def install(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` return the completed schema (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI caches this very dict in app.openapi_schema
            schema.setdefault("components", {}).setdefault("schemas", {})
            schema["components"]["schemas"]["ErrorDetail"] = _ERROR_DETAIL_SCHEMA
            schema["components"]["schemas"]["DatabaseUnavailable"] = _DATABASE_UNAVAILABLE_SCHEMA
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    _add_common_responses(operation)
            _apply_setting_enums(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_common_responses(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    extra: dict[str, Any] = {}
    if operation.get("security"):
        extra.update(_WITH_TOKEN)
    if "requestBody" in operation:
        extra.update(_WITH_BODY)
        extra.setdefault(
            "422",
            {
                "description": "Validation Error",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}
                    }
                },
            },
        )
    for code, response in extra.items():
        responses.setdefault(code, response)
    if operation.get("security") or "requestBody" in operation:
        _add_database_unavailable(responses)


def _add_database_unavailable(responses: dict[str, Any]) -> None:
    own = responses.get("503")
    if own is None:
        responses["503"] = _DATABASE_UNAVAILABLE
        return
    # The operation's own 503 (Stripe, the model, no SMTP) keeps its body schema: the
    # database's body (detail, kind, retryable) fits each of them.
    own["description"] += "; or the database is not reachable (retry after Retry-After)"
    own.setdefault("headers", {}).update(_DATABASE_UNAVAILABLE["headers"])


def _apply_setting_enums(node: Any, settings: Settings) -> None:
    if isinstance(node, dict):
        setting = node.pop(SETTING_ENUM_KEY, None)
        if setting is not None:
            node["enum"] = list(getattr(settings, setting))
        for value in node.values():
            _apply_setting_enums(value, settings)
    elif isinstance(node, list):
        for value in node:
            _apply_setting_enums(value, settings)
