"""Every table, imported in one place for Alembic and for tests."""

from service.articles.models import Article, Feed
from service.db import Base
from service.delivery.models import Bounce, Delivery, SendingHealth
from service.digests.models import ChecksOverride, Issue, IssueArticle, LinkCheck, ScheduleSlot
from service.instance_keys import InstanceKey
from service.ops.models import Counter, Incident, Mark, WorkerSeen, WriterMark
from service.staff.models import AuditEntry, StaffAccount, StaffSession
from service.subscribers.models import (
    ConsentRecord,
    ImportJob,
    ImportRejection,
    Subscriber,
    SubscriberEvent,
    Suppression,
)

__all__ = [
    "Article", "AuditEntry", "Base", "Bounce", "ChecksOverride", "ConsentRecord", "Counter", "Delivery",
    "Feed", "ImportJob", "ImportRejection", "Incident", "InstanceKey", "Issue", "IssueArticle", "LinkCheck",
    "Mark", "ScheduleSlot",
    "SendingHealth", "StaffAccount", "StaffSession", "Subscriber", "SubscriberEvent", "Suppression",
    "WorkerSeen", "WriterMark",
]
