"""callbacks: an event recorded without a channel carries its reference's account

Revision ID: 0013
Revises: 0012

A callback recorded without a channel (``fp.payments.record(event)`` from a case system),
or through a gateway channel that serves no one account, stored no account.
Reconciliation then found such callbacks by joining every callback of the look-back
window, of every account, to its reference, once per account-day. Recording now stores
the reference's account (``feepay.recording.Target``); this revision gives the events
already stored theirs, so each account-day reads its own callbacks by index alone.

Downgrade empties the column again where it was empty before: events without a channel,
or whose channel serves no one account (a channel's account never changes).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE payment_events SET account_id = (SELECT r.account_id FROM "
               "payment_references AS r WHERE r.id = payment_events.reference_id) "
               "WHERE account_id IS NULL AND reference_id IS NOT NULL")


def downgrade() -> None:
    op.execute("UPDATE payment_events SET account_id = NULL WHERE channel_id IS NULL OR "
               "channel_id IN (SELECT id FROM channels WHERE account_id IS NULL)")
