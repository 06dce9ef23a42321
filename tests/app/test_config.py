"""Settings: parsing, validation, and readable refusals."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import ConfigurationError, Settings, get_settings, load_settings
from app.core.db import sync_database_url

GOOD_URL = "postgresql+asyncpg://kt:pw@db.internal:5432/knowledgetree"
STRONG_SECRET = "Zq3x9V7mK2pL8sR4tY6wB1nC5dF0gH3j-strong"


@pytest.fixture
def reload_settings(monkeypatch):
    """Let a test change the environment; the cached settings are reloaded afterwards."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_every_setting_is_documented():
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_defaults_and_derived_paths(tmp_path):
    settings = load_settings(database_url=GOOD_URL, secret_key="x", data_dir=tmp_path)
    assert settings.environment == "test"  # from the test environment
    assert settings.access_token_minutes == 15
    assert settings.refresh_token_days == 30
    assert (settings.chunk_size, settings.chunk_overlap) == (256, 64)
    assert settings.embedding_model == "all-MiniLM-L6-v2"
    assert settings.torch_threads == 1
    assert settings.uploads_dir == tmp_path / "uploads"
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.anthropic_api_key is None


def test_values_come_from_the_environment(reload_settings):
    reload_settings.setenv("MAX_UPLOAD_MB", "7")
    reload_settings.setenv("CORS_ORIGINS", "http://localhost:5173, https://kt.example.org")
    reload_settings.setenv("CHAT_ALLOWED_MODELS", '["claude-sonnet-4-5", "claude-x"]')
    reload_settings.setenv("ANTHROPIC_API_KEY", "")  # empty means unset
    settings = get_settings()
    assert settings.max_upload_mb == 7
    assert settings.cors_origins == ["http://localhost:5173", "https://kt.example.org"]
    assert settings.chat_allowed_models == ["claude-sonnet-4-5", "claude-x"]
    assert settings.anthropic_api_key is None


def test_values_come_from_a_dotenv_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CHUNK_SIZE=300\nUNRELATED_TOOL_SETTING=1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHUNK_SIZE", raising=False)
    settings = Settings(_env_file=".env")
    assert settings.chunk_size == 300


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://kt:pw@h/db", "postgresql+asyncpg://kt:pw@h/db"),
        ("postgres://kt@h:5433/db", "postgresql+asyncpg://kt@h:5433/db"),
        (
            "postgresql+psycopg://kt@/db?host=/run/postgresql",
            "postgresql+asyncpg://kt@/db?host=/run/postgresql",
        ),
        ("postgresql+asyncpg://kt:p%40ss@h/db", "postgresql+asyncpg://kt:p%40ss@h/db"),
    ],
)
def test_database_url_is_normalised_to_asyncpg(given, expected):
    settings = load_settings(database_url=given, secret_key="x")
    assert settings.database_url == expected
    assert sync_database_url(settings) == expected.replace("+asyncpg", "+psycopg")
    assert sync_database_url(settings, "psycopg2").startswith("postgresql+psycopg2://")


def test_missing_required_settings_are_named(reload_settings):
    reload_settings.delenv("DATABASE_URL")
    reload_settings.delenv("SECRET_KEY")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert "DATABASE_URL is not set" in message
    assert "SECRET_KEY is not set" in message
    assert "\n" not in message  # one readable paragraph, no traceback-like dump


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"database_url": "mysql://u@h/db"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"database_url": "postgresql://u@h"}, "DATABASE_URL names no database"),
        ({"database_url": "::nonsense::"}, "DATABASE_URL is not a database URL"),
        ({"max_upload_mb": "lots"}, "MAX_UPLOAD_MB Input should be a valid integer"),
        ({"max_upload_mb": 0}, "MAX_UPLOAD_MB Input should be greater than or equal to 1"),
        ({"environment": "staging"}, "ENVIRONMENT Input should be"),
        ({"chunk_size": 100, "chunk_overlap": 100}, "CHUNK_OVERLAP (100) must be smaller"),
        ({"chat_model": "gpt-4"}, "CHAT_MODEL 'gpt-4' is not in CHAT_ALLOWED_MODELS"),
        ({"search_default_top_k": 60}, "SEARCH_DEFAULT_TOP_K (60) must not exceed"),
    ],
)
def test_invalid_settings_are_explained(overrides, expected):
    values = {"database_url": GOOD_URL, "secret_key": "x", **overrides}
    with pytest.raises(ConfigurationError, match="configuration is invalid") as error:
        load_settings(**values)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("short-secret", "SECRET_KEY is too short for production (12 characters"),
        ("a" * 40, "SECRET_KEY is a well-known or trivially guessable value"),
        ("changeme" + " " * 30, "SECRET_KEY is a well-known or trivially guessable value"),
    ],
)
def test_production_refuses_a_weak_secret_key(secret, reason):
    with pytest.raises(ConfigurationError) as error:
        load_settings(environment="production", database_url=GOOD_URL, secret_key=secret)
    message = str(error.value)
    assert reason in message
    assert "secrets.token_urlsafe" in message  # tells how to make a good one


def test_production_accepts_a_strong_secret_key():
    settings = load_settings(
        environment="production", database_url=GOOD_URL, secret_key=STRONG_SECRET
    )
    assert settings.secret_key.get_secret_value() == STRONG_SECRET
    assert STRONG_SECRET not in repr(settings)  # SecretStr hides it


def test_development_tolerates_a_short_secret_key():
    assert load_settings(environment="development", database_url=GOOD_URL, secret_key="dev")


def test_app_refuses_to_start_with_a_readable_message(reload_settings):
    from app.main import create_app

    reload_settings.setenv("ENVIRONMENT", "production")
    reload_settings.setenv("SECRET_KEY", "changeme")
    with pytest.raises(ConfigurationError, match="SECRET_KEY is too short for production"):
        create_app()


def test_cli_refuses_to_run_with_a_readable_message(reload_settings):
    reload_settings.delenv("DATABASE_URL")
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.output
    assert "Traceback" not in result.output
