"""SQLAlchemy models: the facts the service keeps. Derived things (a source's step) are not here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Id = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON}


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (declared as a plain ``FromClause`` on the model)."""
    return cast(Table, model.__table__)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    redirect_url_allowlist: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[AccountToken]] = relationship(back_populates="account")


class AccountToken(Base):
    """An API token of an account. Only the SHA-256 of the token is kept."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship(back_populates="tokens")


class Sealed:
    """Mixin of rows that hold one encrypted value (see app/crypto.py).

    ``associated_data`` names where the value lives, so a ciphertext moved to another row fails
    to open. ``flask connect rotate-keys`` re-encrypts every row of every class with this mixin.
    """

    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # Each subclass defines ``associated_data: str`` (a property naming where the value lives).


class Source(Base):
    """A data source of an account. Which step it stands at is derived (app/sources/steps.py)."""

    __tablename__ = "sources"
    __table_args__ = (
        # Names are unique among an account's live sources; deleting a source frees its name.
        Index("uq_sources_account_name_live", "account_id", "name", unique=True,
              postgresql_where=text("deleted_at IS NULL"), sqlite_where=text("deleted_at IS NULL")),
        Index("ix_sources_account_live_id", "account_id", "deleted_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(50))
    display_name: Mapped[str] = mapped_column(String(255))
    # Provided non-credential property values; credentials live in source_credentials.
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    # Bumped on every change, so ETags and If-Match can tell versions apart.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Bumped when a form/oauth property changes: a check for an older generation no longer counts.
    config_generation: Mapped[int] = mapped_column(Integer, default=1)
    # The config generation whose connection check and discovery last succeeded (None: never).
    discovered_generation: Mapped[int | None] = mapped_column(Integer)
    connected_at: Mapped[datetime | None]
    broken_at: Mapped[datetime | None]
    broken_reason: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_at: Mapped[datetime | None]
    system_paused_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # What the webhooks last said about the source's step and setup state (both derived, never
    # stored as facts): app/sources/lifecycle.py compares the state after a change with these.
    # A null announced_state: nothing announced yet. On the source's row, because every write
    # that can move them already holds its lock (so two cannot both announce the same move).
    announced_step: Mapped[str | None] = mapped_column(String(50))
    announced_state: Mapped[str | None] = mapped_column(String(20))

    credentials: Mapped[list[SourceCredential]] = relationship(
        back_populates="source", cascade="all, delete-orphan", lazy="selectin")


class SourceCredential(Sealed, Base):
    __tablename__ = "source_credentials"
    __table_args__ = (UniqueConstraint("source_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    source: Mapped[Source] = relationship(back_populates="credentials")

    @property
    def associated_data(self) -> str:
        return credential_associated_data(self.source_id, self.name)


def credential_associated_data(source_id: int, name: str) -> str:
    """Where a source credential's ciphertext lives: what it is sealed under and opened with
    (app/sources/credentials.py seals with it before the row exists; the row opens with it)."""
    return f"source-credential:{source_id}:{name}"


class SourceEvent(Base):
    """The audit trail of a source. ``detail`` never holds a secret value."""

    __tablename__ = "source_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class IdempotencyKey(Base):
    """The first result of a ``POST /v4/sources`` sent with an ``Idempotency-Key``."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def load_all_models() -> None:
    """Import every module that defines models, so ``Base.metadata`` knows all tables."""
    from .connect import models as _connect  # noqa: F401
    from .connectors import models as _connectors  # noqa: F401
    from .discovery import models as _discovery  # noqa: F401
    from .jobs import models as _jobs  # noqa: F401
    from .oauth import models as _oauth  # noqa: F401
    from .webhooks import models as _webhooks  # noqa: F401
