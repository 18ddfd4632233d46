"""Rows of the token store (cached access and session tokens).

One row per source and token kind. The row also holds the refresh lease concurrent refreshers
share (see app/connectors/tokens.py), so it exists before the first token does: a row without a token holds
the sealed empty string and ``expires_at`` NULL. Failure state for back-off lives on the same row,
so every process shares one retry schedule per source.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base, Id, Sealed, utcnow

ACCESS_TOKEN = "access_token"
SESSION_TOKEN = "session_token"
TOKEN_KINDS = (ACCESS_TOKEN, SESSION_TOKEN)
NO_TOKEN = ""  # the sealed plaintext of a row that holds no token yet (or any more)


class SourceToken(Sealed, Base):
    """A source's cached token of one kind, with its expiry and the state of failed refreshes."""

    __tablename__ = "source_tokens"
    __table_args__ = (UniqueConstraint("source_id", "kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    # None while the row holds no token.
    expires_at: Mapped[datetime | None]
    refreshed_at: Mapped[datetime | None]
    # False when the provider's answer stated no lifetime (expires_at is then assumed): keep-alive
    # probes such a token with the card's check request rather than trusting the assumption.
    expiry_stated: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The source's config_generation when the token was obtained or the last failure happened:
    # a user who changes a credential starts a new generation, which voids both.
    config_generation: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(60))
    last_error_permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    # The refresh lease (app/connectors/tokens.py): the caller asking the provider right now, and
    # until when its claim holds; both None while nobody is.
    refresh_holder: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def associated_data(self) -> str:
        return token_associated_data(self.source_id, self.kind)

    @property
    def holds_token(self) -> bool:
        return self.expires_at is not None


def token_associated_data(source_id: int, kind: str) -> str:
    return f"source-token:{source_id}:{kind}"
