"""The OpenAPI schema says every answer an operation can give.

FastAPI documents what each route declares; some answers come from elsewhere and
are added here, for every operation at once, so a new route cannot forget them:

* 401 on every operation that needs a token (the bearer dependency);
* 400 (a body that is not UTF-8 JSON or not readable multipart), 413 (the body
  limit, ``app.core.body_limit``) and 422 on every operation that takes a body;
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
