"""Tracker events as blinker signals, sent only after the transaction that caused them commits.

Subscribe with `entity_synced.connect(receiver)`; a receiver gets the `ExternalLink` as sender and the
`EntityRef` as `entity`. Nothing is sent for work that rolls back.
"""

from __future__ import annotations

from typing import Any

from blinker import Signal
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

entity_synced = Signal("entity_synced")
sync_failed = Signal("sync_failed")
link_deleted = Signal("link_deleted")

PENDING_KEY = "membersync_tracker_events"
COMMITTED_KEY = "membersync_tracker_committed"


def defer(session: AsyncSession, signal: Signal, sender: Any, **payload: Any) -> None:
    """Queue `signal` to be sent when the session's transaction commits."""
    sync_session = session.sync_session
    if not event.contains(sync_session, "after_transaction_end", _transaction_ended):
        event.listen(sync_session, "after_commit", _committed)
        event.listen(sync_session, "after_transaction_end", _transaction_ended)
    sync_session.info.setdefault(PENDING_KEY, []).append((signal, sender, payload))


def _committed(session: Session) -> None:
    session.info[COMMITTED_KEY] = True


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    # Releasing a savepoint ends a nested transaction (and fires after_commit too): wait for the outermost.
    if transaction.nested or transaction.parent is not None:
        return
    pending = session.info.pop(PENDING_KEY, [])
    if session.info.pop(COMMITTED_KEY, False):
        for signal, sender, payload in pending:
            signal.send(sender, **payload)
