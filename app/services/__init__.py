"""Business logic, independent of HTTP: routes and CLI commands call these functions."""
