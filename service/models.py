"""Every table, imported in one place for Alembic and for tests."""

from service.articles.models import Article, Feed
from service.db import Base
from service.delivery.models import Bounce, Delivery
from service.digests.models import Issue, IssueArticle, ScheduleSlot
from service.staff.models import AuditEntry, StaffAccount, StaffSession
from service.subscribers.models import Subscriber, SubscriberEvent, Suppression

__all__ = [
    "Article", "AuditEntry", "Base", "Bounce", "Delivery", "Feed", "Issue", "IssueArticle", "ScheduleSlot",
    "StaffAccount", "StaffSession", "Subscriber", "SubscriberEvent", "Suppression",
]
