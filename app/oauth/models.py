"""Rows of the OAuth handshake (OAuth apps, handshake states, secrets handed out as secret_id).

Every value that grants access is sealed (see ``app.models.Sealed``), so ``flask connect
rotate-keys`` re-encrypts it with the rest. Each row's ``associated_data`` is built from columns
that exist before the row is inserted (a hash or the app's scope), so a row is sealed and written
in one statement, and a ciphertext copied into another row does not open.

Handshake states and secrets are looked up by the SHA-256 of the random value the browser or the
integrator holds; the value itself is never stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base, Id, Sealed, utcnow

OPERATOR_SCOPE = "operator"
ACCOUNT_SCOPE = "account"
# Where the client credentials of a handshake came from (OAuthState.app_scope, OAuthSecret.app_scope):
# an OAuth app row or config file entry (operator/account), or the source's own properties.
SOURCE_SCOPE = "source"


class OAuthApp(Sealed, Base):
    """An OAuth app registered with a provider: operator-wide, or one account's override.

    ``client_id`` is public (it travels in every consent URL); ``client_secret`` is the sealed
    value. ``extra`` holds the non-secret rest of the configuration (e.g. ``scopes``).
    """

    __tablename__ = "oauth_apps"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'operator' AND account_id IS NULL) OR (scope = 'account' AND account_id IS NOT NULL)",
            name="ck_oauth_apps_scope_account"),
        # One app per scope and type. Operator rows have no account, and NULLs never clash in a
        # unique constraint, so each scope gets a partial unique index of its own.
        Index("uq_oauth_apps_operator_type", "source_type", unique=True,
              postgresql_where=text("scope = 'operator'"), sqlite_where=text("scope = 'operator'")),
        Index("uq_oauth_apps_account_type", "account_id", "source_type", unique=True,
              postgresql_where=text("scope = 'account'"), sqlite_where=text("scope = 'account'")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    source_type: Mapped[str] = mapped_column(String(100))
    client_id: Mapped[str] = mapped_column(String(500))
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def associated_data(self) -> str:
        return oauth_app_associated_data(self.scope, self.account_id, self.source_type)


def oauth_app_associated_data(scope: str, account_id: int | None, source_type: str) -> str:
    return f"oauth-app:{scope}:{account_id if account_id is not None else '-'}:{source_type}"


class OAuthState(Sealed, Base):
    """One handshake in flight, found by the hash of its ``state`` parameter.

    The sealed value is JSON with what the browser must never see: the PKCE verifier and the
    client secret of the app chosen at initiate (so a change to the app in the meantime cannot
    mix two apps in one handshake). Once the callback has used the state, it is re-sealed empty.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (Index("ix_oauth_states_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    source_type: Mapped[str] = mapped_column(String(100))
    redirect_url: Mapped[str] = mapped_column(String(2048))
    # Set for a reconnect: the callback re-authorises this source in place.
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    # Non-credential inputs of the handshake (values of the card's ``input_properties``).
    input_configuration: Mapped[dict] = mapped_column(JSON, default=dict)
    app_scope: Mapped[str] = mapped_column(String(20))
    client_id: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # "completed", or the error code the integrator was redirected with.
    outcome: Mapped[str | None] = mapped_column(String(50))

    @property
    def associated_data(self) -> str:
        return f"oauth-state:{self.state_hash}"


class OAuthSecret(Sealed, Base):
    """The result of a finished handshake, handed to the integrator as a ``secret_id``.

    The sealed value is JSON of property values (tokens, the app's client id and secret, values
    from the callback and the handshake's inputs). It is usable once, by its account, for its
    source type, until ``expires_at``; once used it is re-sealed empty, so tokens do not linger.
    """

    __tablename__ = "oauth_secrets"
    __table_args__ = (Index("ix_oauth_secrets_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    source_type: Mapped[str] = mapped_column(String(100))
    app_scope: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))

    @property
    def associated_data(self) -> str:
        return f"oauth-secret:{self.secret_hash}"
