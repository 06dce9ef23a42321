"""The API's routers. ``API_ROUTERS`` is the one list ``create_app`` mounts under
``/api``: to add a resource, write ``app/api/routes/<name>.py`` with a ``router``
and add it here (one import, one list entry).
"""

from fastapi import APIRouter

from app.api.routes import (
    account,
    admin,
    artifacts,
    auth,
    billing,
    chat,
    client_config,
    conversations,
    documents,
    health,
    invitations,
    projects,
    search,
)

API_ROUTERS: list[APIRouter] = [
    health.router,
    client_config.router,
    auth.router,
    projects.router,
    documents.router,
    search.router,
    chat.router,
    conversations.router,
    artifacts.router,
    billing.router,
    account.router,
    invitations.router,
    admin.router,
]
