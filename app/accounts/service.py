"""Accounts and their API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..auth import Principal, forget_token, new_token
from ..db import begin_write
from ..errors import Conflict, Invalid, NotFound, Problem
from ..models import Account, AccountToken, table_of, utcnow
from ..oauth.redirect_urls import redirect_url_problem


@dataclass
class IssuedToken:
    row: AccountToken
    token: str  # the only time the plain token exists


def _issue_token(session: Session, account: Account) -> IssuedToken:
    token, token_hash, hint = new_token()
    row = AccountToken(account=account, token_hash=token_hash, hint=hint)
    session.add(row)
    return IssuedToken(row, token)


def create_account(session: Session, name: str, external_id: str | None) -> tuple[Account, str]:
    try:
        with begin_write(session):
            account = Account(name=name, external_id=external_id)
            session.add(account)
            issued = _issue_token(session, account)
            session.flush()
    except IntegrityError as error:
        raise Conflict(
            f"an account with external_id {external_id!r} exists",
            details=[{"field": "external_id", "reason": "already used by another account"}],
        ) from error
    return account, issued.token


def list_accounts(session: Session) -> list[Account]:
    with session.begin():
        return list(session.scalars(select(Account).order_by(Account.id)))


def visible_account(session: Session, principal: Principal, account_id: int) -> Account:
    """The account, if the caller may see it: the operator sees all, an account only itself."""
    if not principal.is_operator and principal.account_id != account_id:
        raise NotFound(f"account {account_id} not found")
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


def get_account(session: Session, principal: Principal, account_id: int) -> Account:
    with session.begin():
        return visible_account(session, principal, account_id)


def update_account(session: Session, principal: Principal, account_id: int,
                   redirect_url_allowlist: list[str] | None) -> Account:
    """Set the redirect_url allow-list; each entry must itself be an acceptable redirect_url, since
    the allow-list only narrows what initiate accepts. An empty list clears it."""
    problems = [Problem(f"redirect_url_allowlist.{index}", problem)
                for index, url in enumerate(redirect_url_allowlist or [])
                if (problem := redirect_url_problem(url))]
    if problems:
        raise Invalid.from_problems(problems, type="invalid_redirect_url")
    with begin_write(session):
        account = visible_account(session, principal, account_id)
        account.redirect_url_allowlist = list(dict.fromkeys(redirect_url_allowlist)) \
            if redirect_url_allowlist else None
    return account


def create_token(session: Session, principal: Principal, account_id: int) -> IssuedToken:
    with begin_write(session):
        account = visible_account(session, principal, account_id)
        issued = _issue_token(session, account)
        session.flush()
    return issued


def list_tokens(session: Session, principal: Principal, account_id: int) -> list[AccountToken]:
    with session.begin():
        visible_account(session, principal, account_id)
        return list(session.scalars(
            select(AccountToken).where(AccountToken.account_id == account_id).order_by(AccountToken.id)))


def revoke_token(session: Session, principal: Principal, account_id: int, token_id: int) -> None:
    with begin_write(session):
        visible_account(session, principal, account_id)
        token = session.get(AccountToken, token_id)
        if token is None or token.account_id != account_id:
            raise NotFound(f"token {token_id} not found")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
        token_hash = token.token_hash
    # Once committed, this process stops accepting it at once (other processes within
    # CONNECT_TOKEN_CACHE_SECONDS, when their cached entry expires).
    forget_token(token_hash)


def account_by_external_id(session: Session, external_id: str, *, create: bool) -> int | None:
    """The id of the account with this ``external_id``; with ``create``, made on first use (named
    after the id, with no token: the operator issues one when it wants a scoped token). Runs in the
    caller's write transaction, so a request refused later creates nothing.

    Two first uses at once make one account: the insert does nothing when the id exists, on
    PostgreSQL also when another transaction inserted it and commits first (the insert waits for
    it), and the select that follows sees the row that won."""
    query = select(Account.id).where(Account.external_id == external_id)
    found: int | None = session.scalars(query).one_or_none()
    if found is None and create:  # the insert only on first use: every later use is one select
        insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
        session.execute(insert(table_of(Account)).values(
            name=external_id, external_id=external_id, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["external_id"]))
        found = session.scalars(query).one_or_none()
    return found


def external_id_of(session: Session, account_id: int) -> str | None:
    with session.begin():
        return session.scalars(select(Account.external_id).where(Account.id == account_id)).one_or_none()
