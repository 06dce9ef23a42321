"""The backup drill: a package, so its conftest does not shadow tests/infra/conftest.py."""
