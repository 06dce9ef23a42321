"""Test accounts: the password every test user gets, and what ``user_factory`` returns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
TEST_PASSWORD = "correct horse battery staple"


@dataclass
class TestUser:
    __test__ = False  # not a test class, despite the name

    id: uuid.UUID
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


UserFactory = Callable[..., Awaitable[TestUser]]
