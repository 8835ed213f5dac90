"""Tables. Importing this package registers every model on `Base.metadata`."""

from membersync.models.base import Base
from membersync.models.identity import AuditEntry, Conflict, DuplicatePair
from membersync.models.job import Job, JobStatus, Lock
from membersync.models.link import ExternalLink
from membersync.models.member import Entitlement, ExternalProfile, Member, MemberMeta
from membersync.models.push import PushAttempt, PushBatch, PushBatchMember
from membersync.models.sync import SyncOperation, SyncRun
from membersync.models.tenant import ApiToken, Tenant

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Conflict",
    "DuplicatePair",
    "Entitlement",
    "ExternalLink",
    "ExternalProfile",
    "Job",
    "JobStatus",
    "Lock",
    "Member",
    "MemberMeta",
    "PushAttempt",
    "PushBatch",
    "PushBatchMember",
    "SyncOperation",
    "SyncRun",
    "Tenant",
]
