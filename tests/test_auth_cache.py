"""The per-process token cache (CONNECT_TOKEN_CACHE_SECONDS): what it remembers, for how long, and
that a revocation in this process takes effect at once."""

from __future__ import annotations

from sqlalchemy import update

from app import db
from app.auth import Principal, TokenCache, forget_token, hash_token, token_cache
from app.config import settings_from_environment
from app.models import AccountToken, utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _revoke_behind_the_service(app, token: str) -> None:
    """What another worker process does: the row changes, this process's cache is not told."""
    with app.app_context():
        session = db.session()
        with session.begin():
            session.execute(update(AccountToken).where(AccountToken.token_hash == hash_token(token))
                            .values(revoked_at=utcnow()))


# --- the cache itself ---------------------------------------------------------------------------

def test_an_entry_lives_for_the_ttl():
    clock = Clock()
    cache = TokenCache(5, clock=clock)
    principal = Principal("account", account_id=7, token_id=3)
    cache.put("h", principal)
    assert cache.get("h") == principal
    clock.now += 4.9
    assert cache.get("h") == principal
    clock.now += 0.1
    assert cache.get("h") is None
    assert len(cache) == 0


def test_a_ttl_of_zero_caches_nothing():
    cache = TokenCache(0)
    assert not cache.enabled
    cache.put("h", Principal("account", account_id=1))
    assert cache.get("h") is None


def test_drop_forgets_and_a_lookup_older_than_the_drop_is_not_cached():
    cache = TokenCache(5)
    principal = Principal("account", account_id=1)
    cache.put("h", principal)
    generation = cache.generation  # a lookup starts here …
    forget_token("h")  # … the token is revoked (every cache of the process drops it) …
    assert cache.get("h") is None
    cache.put("h", principal, generation)  # … and what the lookup read must not come back
    assert cache.get("h") is None
    cache.put("h", principal, cache.generation)
    assert cache.get("h") == principal


def test_the_cache_is_bounded():
    clock = Clock()
    cache = TokenCache(5, max_entries=3, clock=clock)
    for number in range(3):
        cache.put(f"old{number}", Principal("account", account_id=number))
    clock.now += 10  # all three expired: making room drops them, not the live ones
    cache.put("new", Principal("account", account_id=9))
    assert len(cache) == 1 and cache.get("new") is not None
    for number in range(5):
        cache.put(f"live{number}", Principal("account", account_id=number))
    assert len(cache) <= 3


def test_the_setting():
    assert settings_from_environment({})["TOKEN_CACHE_SECONDS"] == 5.0
    assert settings_from_environment({"CONNECT_TOKEN_CACHE_SECONDS": "0"})["TOKEN_CACHE_SECONDS"] == 0.0
    assert settings_from_environment({"CONNECT_TOKEN_CACHE_SECONDS": "2.5"})["TOKEN_CACHE_SECONDS"] == 2.5


# --- through the service ------------------------------------------------------------------------

def test_a_token_revoked_through_the_api_is_refused_at_once(app, client, operator, account):
    assert client.get("/v4/source-types", headers=account.headers).status_code == 200
    assert token_cache(app).get(hash_token(account.token)) is not None  # remembered
    tokens = client.get(f"/v4/accounts/{account.id}/tokens", headers=operator).get_json()
    assert client.delete(f"/v4/accounts/{account.id}/tokens/{tokens[0]['id']}",
                         headers=operator).status_code == 204
    assert token_cache(app).get(hash_token(account.token)) is None
    assert client.get("/v4/source-types", headers=account.headers).status_code == 401


def test_another_process_revoking_is_seen_when_the_entry_expires(make_app, new_account):
    app = make_app(TOKEN_CACHE_SECONDS=5)
    clock = Clock()
    token_cache(app).clock = clock
    client = app.test_client()
    account = new_account("elsewhere")
    assert client.get("/v4/sources", headers=account.headers).status_code == 200
    _revoke_behind_the_service(app, account.token)
    clock.now += 4  # within the TTL the cached principal still answers
    assert client.get("/v4/sources", headers=account.headers).status_code == 200
    clock.now += 1.5  # expired: looked up again, and refused
    assert client.get("/v4/sources", headers=account.headers).status_code == 401
    # A bad token is never cached: it is refused on every request.
    assert len(token_cache(app)) == 0


def test_with_the_cache_off_every_request_looks_the_token_up(make_app, new_account):
    app = make_app(TOKEN_CACHE_SECONDS=0)
    client = app.test_client()
    account = new_account("uncached")
    assert client.get("/v4/sources", headers=account.headers).status_code == 200
    assert len(token_cache(app)) == 0
    _revoke_behind_the_service(app, account.token)
    assert client.get("/v4/sources", headers=account.headers).status_code == 401


def test_the_operator_token_follows_the_setting(make_app):
    app = make_app(OPERATOR_TOKEN="op_first_token")
    client = app.test_client()
    assert client.get("/v4/accounts", headers={"Authorization": "Bearer op_first_token"}).status_code == 200
    app.config["OPERATOR_TOKEN"] = "op_second_token"
    assert client.get("/v4/accounts", headers={"Authorization": "Bearer op_first_token"}).status_code == 401
    assert client.get("/v4/accounts", headers={"Authorization": "Bearer op_second_token"}).status_code == 200
