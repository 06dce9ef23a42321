"""ORM models. Every model module is imported here so ``Base.metadata`` (and thus
Alembic autogenerate and the test suite) sees all tables.

Add one import line per new model module.
"""

from app.models.base import Base
from app.models.billing import BillingCustomer, StripeEvent, Subscription, UsageCounter
from app.models.conversation import Artifact, ArtifactVersion, Conversation, Message, MessageSource
from app.models.document import Document, DocumentStatus
from app.models.project import Project
from app.models.user import LoginThrottle, PasswordResetToken, RefreshToken, User

__all__ = [
    "Artifact",
    "ArtifactVersion",
    "Base",
    "BillingCustomer",
    "Conversation",
    "Document",
    "DocumentStatus",
    "LoginThrottle",
    "Message",
    "MessageSource",
    "PasswordResetToken",
    "Project",
    "RefreshToken",
    "StripeEvent",
    "Subscription",
    "UsageCounter",
    "User",
]
