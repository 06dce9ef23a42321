"""Helpers for the app tests: plain functions, classes and data that test modules import.

Fixtures live in ``tests/app/conftest.py`` (database, app, client, users) and in
``tests/app/fixtures/`` (pytest plugins by topic: chat, billing). Stand-ins for paid
services are in ``tests/fakes/``. A test module never imports another test module:
what two of them share goes here.
"""
