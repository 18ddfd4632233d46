"""A connect session: what one end user may do on the hosted connect page.

The token is random and only its SHA-256 is kept, like account tokens. A session reaches one
source: the one it was created for (``source_id``), or the one the page creates for it, of one of
``allowed_types``; once bound it never changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base, Id, utcnow

CONNECT_MODE = "connect"
RECONNECT_MODE = "reconnect"
COMPLETED = "completed"
CANCELLED = "cancelled"


class ConnectSession(Base):
    __tablename__ = "connect_sessions"
    __table_args__ = (Index("ix_connect_sessions_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    allowed_types: Mapped[list] = mapped_column(JSON)
    # The type the user picked (or the only one allowed); fixed once a source is bound.
    source_type: Mapped[str | None] = mapped_column(String(100))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(20), default=CONNECT_MODE)
    redirect_url: Mapped[str] = mapped_column(String(2048))
    # Validated branding (title, logo_url, primary_color): rendered into the page.
    display: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(20))  # completed | cancelled
