#!/usr/bin/env python3
"""Generate report_cards/<type>.json, one report card file per Stitch source type.

Provenance
----------
* Public part (type, display_name, details, upgrade_available, steps): copied field for field
  from ``shared/data/stitch-source-types.json`` (Stitch's documented ``GET /v4/source-types``
  example joined with the connection-property docs). Every property keeps exactly the seven
  attributes name, is_required, is_credential, system_provided, property_type, json_schema,
  tap_mutable, in the data's order; ``provided`` is never written (the service adds it).
* display_name: the data's value; where it is null a readable name is derived from the type
  (prefix ``platform.``/``webhook.``/``hp.`` dropped, words split on ``-``/``_``, title-cased,
  e.g. ``platform.hp-postgres`` -> "Hp Postgres"). Derived for the 39 types: platform.wootric,
  db2, platformpurple, jira-cloud, toast, freshsales, exchangeratesapi, redshift, gemini,
  appfigures, mavenlink, satismeter, azure, copper, dayforce, pagerduty, criteo, pinterest-ads,
  swellrewards, typo, amazon-ads-dsp, autodesk-bim-360, sling, x-y, insided, signonsite,
  nikabot, skubana, ordway, youtube-analytics, hp-heroku-pg, amazon-sp, ms-dynamics,
  nice-incontact, calendly, hp-mariadb, hp-aurora, hp-cloudsql (all ``platform.*``) and
  hp.rando. The script prints the list it derived, so a data change shows up in its output.
* Doc-only types (steps null: platform.ga4, platform.tiktok-ads) get steps built from their
  connection-property doc: the common scheduling properties copied from the
  platform.google-analytics card (anchor_time, cron_expression, frequency_in_minutes,
  image_version, start_date when the doc says uses_start_date) plus the doc's form attributes,
  then an ``oauth`` step from the doc's oauth attributes (client id/secret, refresh/access
  token and user_id as system_provided_by_default, as on the Google cards; the rest
  user_provided; is_credential as the doc says), then discover_schema, field_selection,
  fully_configured. platform.tiktok-ads documents no attributes at all, so its form holds only
  the common properties and it has no oauth step. Their ``details`` are unknown (null in the
  data) and are left out; upgrade_available stays null.

Private parts
-------------
* system_values: a value for every read_only property (see READ_ONLY_VALUES). Templates are
  Jinja strings over ``account`` and ``source``. Xero's oauth_s3_bucket / oauth_s3_path are
  optional artefacts of Stitch's old OAuth 1.0a partner app that nothing reads any more; they
  get null, meaning "write nothing". An unknown read_only property stops the script.
* oauth (managed authorization-code handshake), one per type with an oauth step whose OAuth 2
  endpoints are established (OAUTH_SPECS). Provider endpoints, pkce, scope separator,
  authorization/token parameters and client auth come from ``shared/data/oauth-providers.json``
  (facts from Nango's provider catalog) where the provider is there; otherwise from the
  provider's documentation as cited in each DOC_PROVIDERS entry (confirmed against reference
  implementations: Airbyte's OAuth flows, the singer taps Stitch runs, provider client
  libraries). Decisions:
  - ``response_type=code`` and ``grant_type=authorization_code`` from Nango's parameter maps
    are dropped: the handshake always sends them.
  - Zendesk's Nango ``expires_in=1800`` and Shopify's ``expiring=1`` token parameters are
    dropped: they ask for expiring access tokens, and these cards have no refresh-token
    property to renew them with.
  - A URL that depends on a per-connection value becomes a Jinja template over the card's own
    property (``{{ properties.subdomain }}``, ``{{ properties.shop }}``); a Nango ``A || B``
    whose placeholder has no property on the card uses the fallback B (Intercom region,
    Salesforce hostname). Salesforce and Square additionally pick their sandbox hosts from
    the card's ``is_sandbox`` / ``sandbox`` flag (test.salesforce.com, squareupsandbox.com),
    as Airbyte's Salesforce flow does.
  - pkce: Nango's flag where the provider is in the Nango file, otherwise false (support not
    established from the provider's docs).
  - client_auth: client_secret_basic where Nango says token_request_auth_method basic or the
    provider's docs require HTTP Basic on the token request (eBay, Eloqua, Pinterest), else
    client_secret_post.
  - scopes: the read-only scopes the connector needs, from the provider docs.
  Types with an oauth step but no oauth section (NO_OAUTH_REASONS):
  - platform.trello, platform.twitter-ads: OAuth 1.0a, not an OAuth 2 authorization code flow.
  - webhook.segment: its "oauth" properties (scope, source_names, workspace_names) are
    Segment workspace/source selections for a webhook install, not tokens; no OAuth 2
    endpoints for it are documented in the data or the provider catalog.
* auth / api are not written: the service cannot reach the real providers from here.
<<<<<<< HEAD
* singer (the Singer tap that checks and discovers the type): see SINGER_TAPS below.
=======
* connector / database (DATABASE_DIALECTS, database_section): the database types get
  ``"connector": "database"`` and a ``database`` section naming their dialect and which of the
  card's own properties plays each role the connector needs (host, port, database — ``dbname``,
  ``database`` or Oracle's ``sid`` —, user, password, ssl, filter_dbs, filter_schemas — Redshift's
  ``schema`` —, ssh, use_log_based_replication, ssl_client_auth_enabled). A role is written only
  when the card has such a property. Aurora and Heroku Postgres speak the MySQL and PostgreSQL
  protocols, so they get the same sections.
>>>>>>> i14c

Usage: ``python scripts/build_report_cards.py [--source-types P] [--oauth-providers P]
[--out DIR]`` (paths default to ../shared/data/* and report_cards/ relative to the repo root).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_TYPES = REPO_ROOT.parent / "shared" / "data" / "stitch-source-types.json"
DEFAULT_OAUTH_PROVIDERS = REPO_ROOT.parent / "shared" / "data" / "oauth-providers.json"
DEFAULT_OUT = REPO_ROOT / "report_cards"

PROPERTY_ATTRIBUTES = (
    "name",
    "is_required",
    "is_credential",
    "system_provided",
    "property_type",
    "json_schema",
    "tap_mutable",
)
TYPE_PREFIXES = ("platform.", "webhook.", "hp.")
DEFAULT_IMAGE_VERSION = "1.latest"
# The card whose common scheduling properties the doc-only types copy.
COMMON_PROPERTIES_MODEL = "platform.google-analytics"
COMMON_PROPERTY_NAMES = ("anchor_time", "cron_expression", "frequency_in_minutes", "image_version")

# read_only property -> value written at creation (image_version is handled separately).
READ_ONLY_VALUES: dict[str, str | None] = {
    # Google Analytics quotaUser: any per-customer string up to 40 characters.
    "quota_user": "connect-{{ account.id }}",
    # AWS role assumption (S3 CSV, DynamoDB): the external id names the customer account, the
    # role name is unique per source.
    "external_id": "connect-{{ account.id }}",
    "role_name": "connect-source-{{ source.id }}",
    # customer.io webhook key: part of the URL handed to customer.io, unique per source.
    "webhookz_primary_key": "connect-{{ account.id }}-{{ source.id }}",
    # Xero: User-Agent the connector sends.
    "user_agent": "connect ({{ account.id }})",
    # Xero: Stitch's old OAuth 1.0a partner-app key location; optional and unused -> unset.
    "oauth_s3_bucket": None,
    "oauth_s3_path": None,
}

GOOGLE_DOCS = "https://developers.google.com/identity/protocols/oauth2/web-server"

# Providers absent from oauth-providers.json: endpoints and token-request rules from the
# provider's own documentation (URL in "source"), cross-checked as noted.
DOC_PROVIDERS: dict[str, dict[str, Any]] = {
    "harvest": {
        # help.getharvest.com API v2 authentication; same URLs in Airbyte's HarvestOAuthFlow.
        "authorize_url": "https://id.getharvest.com/oauth2/authorize",
        "token_url": "https://id.getharvest.com/api/v2/oauth2/token",
        "client_auth": "client_secret_post",
    },
    "zendesk-chat": {
        # developer.zendesk.com live-chat auth; same URLs in Airbyte's ZendeskChatOAuthFlow.
        "authorize_url": "https://www.zopim.com/oauth2/authorizations/new",
        "token_url": "https://www.zopim.com/oauth2/token",
        "client_auth": "client_secret_post",
    },
    "campaign-monitor": {
        # campaignmonitor.com/api getting-started; createsend-python's authorize_url and
        # exchange_token (form body with client_id/client_secret); comma-separated scopes.
        "authorize_url": "https://api.createsend.com/oauth",
        "token_url": "https://api.createsend.com/oauth/token",
        "client_auth": "client_secret_post",
        "scope_separator": ",",
    },
    "eloqua": {
        # docs.oracle.com Eloqua "Authenticate using OAuth 2.0"; singer tap-eloqua sends the
        # client id/secret as HTTP Basic on the token endpoint.
        "authorize_url": "https://login.eloqua.com/auth/oauth2/authorize",
        "token_url": "https://login.eloqua.com/auth/oauth2/token",
        "client_auth": "client_secret_basic",
    },
    "ebay": {
        # developer.ebay.com OAuth authorization code grant; Basic client credentials on the
        # token request (singer tap-ebay does the same on refresh).
        "authorize_url": "https://auth.ebay.com/oauth2/authorize",
        "token_url": "https://api.ebay.com/identity/v1/oauth2/token",
        "client_auth": "client_secret_basic",
    },
    "helpscout": {
        # developer.helpscout.com mailbox API OAuth2 application.
        "authorize_url": "https://secure.helpscout.net/authentication/authorizeClientApplication",
        "token_url": "https://api.helpscout.net/v2/oauth2/token",
        "client_auth": "client_secret_post",
    },
    "deputy": {
        # developer.deputy.com "Using OAuth 2.0": login and code exchange on once.deputy.com.
        "authorize_url": "https://once.deputy.com/my/oauth/login",
        "token_url": "https://once.deputy.com/my/oauth/access_token",
        "client_auth": "client_secret_post",
    },
    "outreach": {
        # developers.outreach.io OAuth; token request with client_id/client_secret in the body.
        "authorize_url": "https://api.outreach.io/oauth/authorize",
        "token_url": "https://api.outreach.io/oauth/token",
        "client_auth": "client_secret_post",
    },
    "pinterest": {
        # developers.pinterest.com authentication: Basic client credentials on the token
        # request, comma-separated scopes (Airbyte's PinterestOAuthFlow does the same).
        "authorize_url": "https://www.pinterest.com/oauth/",
        "token_url": "https://api.pinterest.com/v5/oauth/token",
        "client_auth": "client_secret_basic",
        "scope_separator": ",",
    },
    "snapchat": {
        # Snap Marketing API authentication; same URLs in Airbyte's SnapchatMarketingOAuthFlow.
        "authorize_url": "https://accounts.snapchat.com/login/oauth2/authorize",
        "token_url": "https://accounts.snapchat.com/login/oauth2/access_token",
        "client_auth": "client_secret_post",
    },
    "adroll": {
        # apidocs.nextroll.com OAuth guide (only scope: "all"); singer tap-adroll refreshes at
        # the same token URL.
        "authorize_url": "https://services.adroll.com/auth/authorize",
        "token_url": "https://services.adroll.com/auth/token",
        "client_auth": "client_secret_post",
    },
    "crossbeam": {
        # developers.crossbeam.com Authentication (Auth0: audience parameter, offline_access
        # for refresh tokens).
        "authorize_url": "https://auth.crossbeam.com/authorize",
        "token_url": "https://auth.crossbeam.com/oauth/token",
        "client_auth": "client_secret_post",
    },
}

GOOGLE_AUTH = {"provider": "google"}

# RFC 7009 revocation endpoints (none of the providers in oauth-providers.json names one), from the
# provider's own documentation; a deleted source's grant is revoked there (app/oauth/revocation.py).
# Only providers whose endpoint takes a form-encoded ``token`` with the token request's client
# authentication: HubSpot (DELETE of the token in the path), Intuit (a JSON body) and Slack
# (auth.revoke with the token itself) revoke differently and are left out.
PROVIDER_REVOCATION_URLS: dict[str, str] = {
    # developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke
    "google": "https://oauth2.googleapis.com/revoke",
    # help.salesforce.com, "Revoke OAuth Tokens" (RFC 7009, form-encoded token)
    "salesforce": "https://login.salesforce.com/services/oauth2/revoke",
    # developer.xero.com/documentation/guides/oauth2/auth-flow, "Revoking tokens"
    "xero": "https://identity.xero.com/connect/revocation",
}

# Per type: provider, scopes and how token/callback fields land in the card's properties.
# client_properties are derived: client_id/client_secret or oauth_client_id/oauth_client_secret,
# whichever the card's oauth step has.
OAUTH_SPECS: dict[str, dict[str, Any]] = {
    "platform.hubspot": {
        "provider": "hubspot",
        # Required scopes every HubSpot portal grants; the rest are asked as optional scopes
        # (HubSpot's optional_scope parameter) because not every portal has them.
        "scopes": ["oauth", "crm.objects.contacts.read", "crm.schemas.contacts.read"],
        "authorize_params": {
            "optional_scope": " ".join(
                [
                    "content",
                    "forms",
                    "automation",
                    "tickets",
                    "e-commerce",
                    "sales-email-read",
                    "crm.lists.read",
                    "crm.objects.companies.read",
                    "crm.objects.deals.read",
                    "crm.objects.owners.read",
                    "crm.schemas.companies.read",
                    "crm.schemas.deals.read",
                ]
            ),
        },
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.facebook": {
        "provider": "facebook",
        "scopes": ["ads_read"],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.harvest": {
        "provider": "harvest",
        "scopes": ["harvest:all"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.harvest-forecast": {
        "provider": "harvest",
        "scopes": ["forecast:all"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.adwords": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/adwords"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.google-ads": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/adwords"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.google-analytics": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/analytics.readonly"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.ga4": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/analytics.readonly"],
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
    },
    "platform.google-sheets": {
        **GOOGLE_AUTH,
        "scopes": [
            "https://www.googleapis.com/auth/spreadsheets.readonly",
            "https://www.googleapis.com/auth/drive.metadata.readonly",
        ],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.google-search-console": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/webmasters.readonly"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.doubleclick-campaign-manager": {
        **GOOGLE_AUTH,
        "scopes": ["https://www.googleapis.com/auth/dfareporting"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.xero": {
        "provider": "xero",
        "scopes": [
            "offline_access",
            "openid",
            "accounting.transactions.read",
            "accounting.contacts.read",
            "accounting.settings.read",
            "accounting.journals.read",
        ],
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
    },
    "platform.zendesk-chat": {
        "provider": "zendesk-chat",
        "scopes": ["read"],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.salesforce": {
        "provider": "salesforce",
        # Sandboxes authorize at test.salesforce.com (Salesforce OAuth docs; Airbyte's flow).
        "authorize_url": (
            "https://{{ 'test' if properties.get('is_sandbox') == 'true' else 'login' }}"
            ".salesforce.com/services/oauth2/authorize"
        ),
        "token_url": (
            "https://{{ 'test' if properties.get('is_sandbox') == 'true' else 'login' }}"
            ".salesforce.com/services/oauth2/token"
        ),
        "revocation_url": (
            "https://{{ 'test' if properties.get('is_sandbox') == 'true' else 'login' }}"
            ".salesforce.com/services/oauth2/revoke"
        ),
        "input_properties": ["is_sandbox"],
        "scopes": ["api", "refresh_token"],
        "token_properties": {"refresh_token": "refresh_token", "instance_url": "instance_url"},
    },
    "platform.pardot": {
        "provider": "salesforce",
        "scopes": ["pardot_api", "refresh_token"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.bing-ads": {
        "provider": "microsoft",
        "scopes": ["https://ads.microsoft.com/msads.manage", "offline_access"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.ms-teams": {
        "provider": "microsoft",
        # The connector calls Graph with app-only (client credentials) tokens; the handshake
        # obtains consent for the app's configured Graph permissions.
        "scopes": ["https://graph.microsoft.com/.default", "offline_access"],
        "token_properties": {},
    },
    "platform.zendesk": {
        "provider": "zendesk",
        "url_properties": {"subdomain": "subdomain"},
        "drop_token_params": ["expires_in"],
        "scopes": ["read"],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.campaign-monitor": {
        "provider": "campaign-monitor",
        "scopes": ["ViewReports", "ViewSubscribersInReports"],
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
        # The form's client_id is Campaign Monitor's client (account), not the OAuth app.
        "client_properties": {},
    },
    "platform.shopify": {
        "provider": "shopify",
        "url_properties": {"subdomain": "shop"},
        "drop_token_params": ["expiring"],
        "scope_separator": ",",
        "scopes": [
            "read_customers",
            "read_fulfillments",
            "read_inventory",
            "read_locations",
            "read_orders",
            "read_products",
            "read_content",
        ],
        "token_properties": {"access_token": "api_key"},
        "docs_url": (
            "https://shopify.dev/docs/apps/build/authentication-authorization/"
            "access-tokens/authorization-code-grant"
        ),
    },
    "platform.stripe": {
        "provider": "stripe",
        "scopes": ["read_only"],
        "token_properties": {"stripe_user_id": "account_id"},
    },
    "platform.eloqua": {
        "provider": "eloqua",
        "scopes": ["full"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.jira-cloud": {
        "provider": "atlassian",
        "scopes": ["read:jira-work", "read:jira-user", "offline_access"],
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
        "docs_url": "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/",
    },
    "platform.asana": {
        "provider": "asana",
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
    },
    "platform.mailchimp": {
        "provider": "mailchimp",
        "scopes": [],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.ebay": {
        "provider": "ebay",
        "scopes": ["https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.helpscout": {
        "provider": "helpscout",
        "scopes": [],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.linkedin-ads": {
        "provider": "linkedin",
        "scopes": ["r_ads", "r_ads_reporting"],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.deputy": {
        "provider": "deputy",
        "scopes": ["longlife_refresh_token"],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.outreach": {
        "provider": "outreach",
        "scopes": [
            "accounts.read",
            "calls.read",
            "contentCategories.read",
            "events.read",
            "mailboxes.read",
            "mailings.read",
            "opportunities.read",
            "prospects.read",
            "sequenceStates.read",
            "sequenceSteps.read",
            "sequenceTemplates.read",
            "sequences.read",
            "stages.read",
            "tasks.read",
            "teams.read",
            "users.read",
        ],
        "token_properties": {"refresh_token": "refresh_token"},
        "docs_url": "https://developers.outreach.io/api/oauth/",
    },
    "platform.intercom": {
        "provider": "intercom",
        "scopes": [],
        "token_properties": {"access_token": "access_token"},
    },
    "platform.pinterest-ads": {
        "provider": "pinterest",
        "scopes": ["ads:read", "user_accounts:read"],
        "token_properties": {"access_token": "access_token"},
        "docs_url": "https://developers.pinterest.com/docs/getting-started/authentication/",
    },
    "platform.adroll": {
        "provider": "adroll",
        "scopes": ["all"],
        "token_properties": {"access_token": "access_token", "refresh_token": "refresh_token"},
    },
    "platform.square": {
        "provider": "squareup",
        # Sandbox sellers authorize on Square's sandbox host (Square OAuth API docs).
        "authorize_url": (
            "https://{{ 'connect.squareupsandbox.com' if properties.get('sandbox') == 'true'"
            " else 'connect.squareup.com' }}/oauth2/authorize"
        ),
        "token_url": (
            "https://{{ 'connect.squareupsandbox.com' if properties.get('sandbox') == 'true'"
            " else 'connect.squareup.com' }}/oauth2/token"
        ),
        "input_properties": ["sandbox"],
        "scopes": [
            "BANK_ACCOUNTS_READ",
            "CUSTOMERS_READ",
            "EMPLOYEES_READ",
            "INVENTORY_READ",
            "ITEMS_READ",
            "MERCHANT_PROFILE_READ",
            "ORDERS_READ",
            "PAYMENTS_READ",
            "SETTLEMENTS_READ",
            "TIMECARDS_READ",
        ],
        "token_properties": {"refresh_token": "refresh_token"},
    },
    "platform.snapchat-ads": {
        "provider": "snapchat",
        "scopes": ["snapchat-marketing-api"],
        "token_properties": {"refresh_token": "refresh_token"},
        "docs_url": "https://marketingapi.snapchat.com/docs/#authentication",
    },
    "platform.quickbooks": {
        "provider": "quickbooks",
        "scopes": ["com.intuit.quickbooks.accounting"],
        "token_properties": {"refresh_token": "refresh_token"},
        "callback_properties": {"realmId": "realm_id"},
    },
    "platform.crossbeam": {
        "provider": "crossbeam",
        "scopes": [
            "openid",
            "read:partnerships",
            "read:reports",
            "read:populations",
            "offline_access",
        ],
        "authorize_params": {"audience": "https://api.getcrossbeam.com"},
        "token_properties": {"refresh_token": "refresh_token"},
    },
}

NO_OAUTH_REASONS: dict[str, str] = {
    "platform.trello": "uses OAuth 1.0a (consumer key/secret, token secret), not OAuth 2",
    "platform.twitter-ads": "uses OAuth 1.0a (consumer key/secret, token secret), not OAuth 2",
    "webhook.segment": (
        "its oauth properties are Segment workspace/source selections for a webhook install, "
        "not tokens; no OAuth 2 endpoints are established for it"
    ),
}

# Nango parameters the handshake always sends itself.
STANDARD_AUTHORIZE_PARAMS = {"response_type"}
STANDARD_TOKEN_PARAMS = {"grant_type"}


def load_json(path: Path) -> Any:
    """Read one JSON file."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def derived_display_name(source_type: str) -> str:
    """Readable name from a type id: ``platform.hp-postgres`` -> ``Hp Postgres``."""
    name = source_type
    for prefix in TYPE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    words = [word for word in re.split(r"[-_.]", name) if word]
    return " ".join(word[:1].upper() + word[1:] for word in words)


def copy_property(prop: dict[str, Any]) -> dict[str, Any]:
    """The seven documented property attributes, in the documented order."""
    return {attribute: copy.deepcopy(prop[attribute]) for attribute in PROPERTY_ATTRIBUTES}


def copy_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps with their properties, nothing added."""
    return [
        {"type": step["type"], "properties": [copy_property(p) for p in step["properties"]]}
        for step in steps
    ]


def new_property(
    name: str,
    *,
    required: bool,
    credential: bool,
    property_type: str,
    json_schema: dict[str, Any] | None,
    tap_mutable: bool = False,
) -> dict[str, Any]:
    """A property for a doc-only card; system_provided mirrors the Stitch cards' habit."""
    return {
        "name": name,
        "is_required": required,
        "is_credential": credential,
        "system_provided": property_type in ("read_only", "system_provided_by_default"),
        "property_type": property_type,
        "json_schema": json_schema,
        "tap_mutable": tap_mutable,
    }


def doc_attribute_schema(attribute: dict[str, Any]) -> dict[str, Any] | None:
    """JSON Schema for a documented form attribute, following the Stitch cards' conventions."""
    kind = attribute.get("type")
    if kind == "integer":
        return {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^\\d+$"}]}
    if kind == "boolean":
        return {"type": "string", "pattern": "^(true|false)$"}
    if kind == "array":
        subattributes = attribute.get("subattributes") or []
        if not subattributes:
            return {"type": "array"}
        return {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {sub["name"]: {"type": "string"} for sub in subattributes},
                "additionalProperties": False,
                "required": [sub["name"] for sub in subattributes if sub.get("required")],
            },
        }
    return {"type": "string"}


# OAuth attributes a managed handshake fills (as on the Google cards); others are the user's.
HANDSHAKE_FILLED = {
    "client_id",
    "client_secret",
    "oauth_client_id",
    "oauth_client_secret",
    "refresh_token",
    "access_token",
    "user_id",
}


def build_doc_only_steps(
    entry: dict[str, Any], model_form: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Steps for a type known only from its connection-property doc."""
    doc = entry.get("doc") or {}
    form: list[dict[str, Any]] = [copy_property(model_form[n]) for n in COMMON_PROPERTY_NAMES]
    if doc.get("uses_start_date"):
        form.append(copy_property(model_form["start_date"]))
    for attribute in doc.get("form_attributes") or []:
        form.append(
            new_property(
                attribute["name"],
                required=bool(attribute.get("required")),
                credential=bool(attribute.get("credential")),
                property_type="read_only" if attribute.get("read_only") else "user_provided",
                json_schema=doc_attribute_schema(attribute),
            )
        )
    form.sort(key=lambda p: p["name"])
    steps = [{"type": "form", "properties": form}]
    oauth_attributes = doc.get("oauth_attributes") or []
    if oauth_attributes:
        oauth = [
            new_property(
                attribute["name"],
                required=bool(attribute.get("required")),
                credential=bool(attribute.get("credential")),
                property_type=(
                    "system_provided_by_default"
                    if attribute["name"] in HANDSHAKE_FILLED
                    else "user_provided"
                ),
                json_schema={"type": "string"},
            )
            for attribute in oauth_attributes
        ]
        oauth.sort(key=lambda p: p["name"])
        steps.append({"type": "oauth", "properties": oauth})
    steps += [
        {"type": "discover_schema", "properties": []},
        {"type": "field_selection", "properties": []},
        {"type": "fully_configured", "properties": []},
    ]
    return steps


def system_values_for(
    card_steps: list[dict[str, Any]], details: dict[str, Any] | None, source_type: str
) -> dict[str, Any]:
    """Values the service writes into read_only properties at creation."""
    values: dict[str, Any] = {}
    for step in card_steps:
        for prop in step["properties"]:
            if prop["property_type"] != "read_only":
                continue
            name = prop["name"]
            if name == "image_version":
                values[name] = (details or {}).get("image_version") or DEFAULT_IMAGE_VERSION
            elif name in READ_ONLY_VALUES:
                value = READ_ONLY_VALUES[name]
                if value is None and prop["is_required"]:
                    raise SystemExit(f"{source_type}: required read_only {name} has no value")
                values[name] = value
            else:
                raise SystemExit(f"{source_type}: no system value decided for read_only {name}")
    return values


def nango_url(value: str, url_properties: dict[str, str]) -> str:
    """Turn a Nango URL (``${connectionConfig.X}``, ``A || B``) into a URL or Jinja template."""
    options = [option.strip() for option in value.split("||")]
    for option in options:
        placeholders = re.findall(r"\$\{connectionConfig\.(\w+)\}", option)
        if all(name in url_properties for name in placeholders):
            return re.sub(
                r"\$\{connectionConfig\.(\w+)\}",
                lambda m: "{{ properties." + url_properties[m.group(1)] + " }}",
                option,
            )
    raise SystemExit(f"no usable URL in {value!r} for properties {url_properties}")


def stringify(value: Any) -> str:
    """Parameter values as the strings sent on the wire."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def oauth_section(
    source_type: str,
    spec: dict[str, Any],
    steps: list[dict[str, Any]],
    nango: dict[str, dict[str, Any]],
    docs_url: str | None,
) -> dict[str, Any]:
    """The managed-OAuth section for one type, checked against the card's properties."""
    oauth_step = next(step for step in steps if step["type"] == "oauth")
    oauth_names = {p["name"] for p in oauth_step["properties"]}
    all_names = {p["name"] for step in steps for p in step["properties"]}
    provider_name = spec["provider"]
    url_properties = spec.get("url_properties", {})

    if provider_name in nango:
        provider = nango[provider_name]
        authorize_url = nango_url(provider["authorization_url"], url_properties)
        token_url = nango_url(provider["token_url"], url_properties)
        scope_separator = provider.get("scope_separator", " ")
        authorize_params = {
            key: stringify(value)
            for key, value in (provider.get("authorization_params") or {}).items()
            if key not in STANDARD_AUTHORIZE_PARAMS
        }
        token_params = {
            key: stringify(value)
            for key, value in (provider.get("token_params") or {}).items()
            if key not in STANDARD_TOKEN_PARAMS and key not in spec.get("drop_token_params", [])
        }
        pkce = bool(provider.get("pkce", False))
        client_auth = (
            "client_secret_basic"
            if provider.get("token_request_auth_method") == "basic"
            else "client_secret_post"
        )
        scopes = list(provider.get("default_scopes") or [])
    elif provider_name in DOC_PROVIDERS:
        provider = DOC_PROVIDERS[provider_name]
        authorize_url = provider["authorize_url"]
        token_url = provider["token_url"]
        scope_separator = provider.get("scope_separator", " ")
        authorize_params, token_params = {}, {}
        pkce = False
        client_auth = provider["client_auth"]
        scopes = []
    else:
        raise SystemExit(f"{source_type}: unknown provider {provider_name}")

    authorize_url = spec.get("authorize_url", authorize_url)
    token_url = spec.get("token_url", token_url)
    # RFC 7009: where a deleted source's tokens are revoked (the type's, else the provider's).
    revocation_url = spec.get("revocation_url")
    if revocation_url is None and provider.get("revocation_url"):
        revocation_url = nango_url(provider["revocation_url"], url_properties) if provider_name in nango \
            else provider["revocation_url"]
    if revocation_url is None:
        revocation_url = PROVIDER_REVOCATION_URLS.get(provider_name)
    scope_separator = spec.get("scope_separator", scope_separator)
    authorize_params.update(spec.get("authorize_params", {}))
    if "scopes" in spec:
        # Type-specific scopes replace the provider's defaults (they repeat offline_access etc.
        # where the connector needs it).
        scopes = list(spec["scopes"])

    if "client_properties" in spec:
        client_properties = dict(spec["client_properties"])
    else:
        client_properties = {}
        for key in ("client_id", "client_secret"):
            for candidate in (key, f"oauth_{key}"):
                if candidate in oauth_names:
                    client_properties[key] = candidate
                    break

    token_properties = dict(spec.get("token_properties", {}))
    callback_properties = dict(spec.get("callback_properties", {}))
    input_properties = list(spec.get("input_properties", []))
    input_properties += [name for name in url_properties.values() if name not in input_properties]

    for name in (
        list(client_properties.values())
        + list(token_properties.values())
        + list(callback_properties.values())
    ):
        if name not in oauth_names:
            raise SystemExit(f"{source_type}: {name} is not a property of its oauth step")
    for name in input_properties:
        if name not in all_names:
            raise SystemExit(f"{source_type}: input property {name} is not on the card")
    for url in (authorize_url, token_url, revocation_url or ""):
        for name in re.findall(r"properties(?:\.get\('|\.)(\w+)", url):
            if name not in input_properties:
                raise SystemExit(f"{source_type}: {name} used in a URL but not an input")

    section: dict[str, Any] = {
        "authorize_url": authorize_url,
        "token_url": token_url,
        "scopes": scopes,
        "scope_separator": scope_separator,
        "authorize_params": authorize_params,
        "token_params": token_params,
        "pkce": pkce,
        "client_auth": client_auth,
    }
    if client_properties:
        section["client_properties"] = client_properties
    if token_properties:
        section["token_properties"] = token_properties
    if callback_properties:
        section["callback_properties"] = callback_properties
    if input_properties:
        section["input_properties"] = input_properties
    if revocation_url:
        section["revocation_url"] = revocation_url
    chosen_docs = spec.get("docs_url") or docs_url
    if not chosen_docs and provider_name == "google":
        chosen_docs = GOOGLE_DOCS
    if chosen_docs:
        section["docs_url"] = chosen_docs
    return section


# Source type -> the database connector's dialect (app/connectors/database).
DATABASE_DIALECTS = {
    **dict.fromkeys(("platform.postgres", "platform.hp-postgres", "platform.cloudsql_pg", "platform.hp-cloudsql-pg",
                     "platform.heroku_pg", "platform.hp-heroku-pg"), "postgresql"),
    "platform.redshift": "redshift",
    **dict.fromkeys(("platform.mysql", "platform.hp-mysql", "platform.mariadb", "platform.hp-mariadb",
                     "platform.cloudsql", "platform.hp-cloudsql", "platform.aurora", "platform.hp-aurora"), "mysql"),
    "platform.mssql": "mssql",
    "platform.oracle": "oracle",
}
# Connector role -> the property names that play it, first match wins.
DATABASE_ROLES = {
    "host": ("host",), "port": ("port",), "database": ("dbname", "database", "sid"), "user": ("user",),
    "password": ("password",), "ssl": ("ssl",), "filter_dbs": ("filter_dbs",),
    "filter_schemas": ("filter_schemas", "schema"), "ssh": ("ssh",), "log_based": ("use_log_based_replication",),
    "ssl_client_auth": ("ssl_client_auth_enabled",),
}


def database_section(source_type: str, steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``database`` section of a database type (None for every other type)."""
    dialect = DATABASE_DIALECTS.get(source_type)
    if dialect is None:
        return None
    names = {p["name"] for step in steps for p in step["properties"]}
    roles = {}
    for role, candidates in DATABASE_ROLES.items():
        found = next((name for name in candidates if name in names), None)
        if found is not None:
            roles[role] = found
    missing = [role for role in ("host", "user") if role not in roles]
    if missing:
        raise SystemExit(f"{source_type}: database type without a property for {missing}")
    return {"dialect": dialect, "properties": roles}


def check_card(card: dict[str, Any]) -> None:
    """Invariants the JSON Schema cannot express: unique property names in a card."""
    names = [p["name"] for step in card["steps"] for p in step["properties"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f"{card['type']}: duplicate property names {duplicates}")


def build_cards(
    source_types: list[dict[str, Any]], nango: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """All cards, the types whose display name was derived, and oauth-less oauth-step types."""
    model = next(entry for entry in source_types if entry["type"] == COMMON_PROPERTIES_MODEL)
    model_form = {p["name"]: p for p in model["steps"][0]["properties"]}
    cards: list[dict[str, Any]] = []
    derived: list[str] = []
    without_oauth: dict[str, str] = {}

    for entry in source_types:
        source_type = entry["type"]
        display_name = entry.get("display_name")
        if not display_name:
            display_name = derived_display_name(source_type)
            derived.append(source_type)
        if entry.get("steps") is not None:
            steps = copy_steps(entry["steps"])
        else:
            steps = build_doc_only_steps(entry, model_form)

        card: dict[str, Any] = {"type": source_type, "display_name": display_name}
        if entry.get("details") is not None:
            card["details"] = copy.deepcopy(entry["details"])
        card["upgrade_available"] = copy.deepcopy(entry.get("upgrade_available"))
        card["steps"] = steps

        system_values = system_values_for(steps, entry.get("details"), source_type)
        if system_values:
            card["system_values"] = system_values

        has_oauth_step = any(step["type"] == "oauth" for step in steps)
        if has_oauth_step:
            if source_type in OAUTH_SPECS:
                docs_url = (entry.get("doc") or {}).get("oauth_provider_docs")
                card["oauth"] = oauth_section(
                    source_type, OAUTH_SPECS[source_type], steps, nango, docs_url
                )
            elif source_type in NO_OAUTH_REASONS:
                without_oauth[source_type] = NO_OAUTH_REASONS[source_type]
            else:
                raise SystemExit(f"{source_type}: oauth step but no decision on managed OAuth")
        elif source_type in OAUTH_SPECS:
            raise SystemExit(f"{source_type}: oauth spec but the card has no oauth step")

        database = database_section(source_type, steps)
        if database is not None:
            card["connector"] = "database"
            card["database"] = database

        check_card(card)
        cards.append(card)
    return cards, derived, without_oauth


# Where a type's natural short name (the Airbyte dialect's ``connector_type``: ``hubspot``) comes from.
ALIAS_SUFFIXES = {"webhook.": "-webhook"}  # webhook.iterable is not platform.iterable: "iterable-webhook"
HP_PREFIX = "hp-"
LEGACY_SUFFIX = "-legacy"


def short_name(source_type: str) -> str:
    """The type without its namespace, in the lower-case, hyphenated form Airbyte names connectors
    with: ``platform.hubspot`` → ``hubspot``, ``platform.cloudsql_pg`` → ``cloudsql-pg``,
    ``webhook.iterable`` → ``iterable-webhook``."""
    namespace, _, name = source_type.rpartition(".")
    suffix = ALIAS_SUFFIXES.get(f"{namespace}.", "") if namespace else ""
    return name.replace("_", "-").lower() + suffix


def aliases_for(cards: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every card's aliases: its short name, and for a Stitch ``hp-`` type that another type names as
    its upgrade the short name without ``hp-`` as well. The current type takes the plain name
    (``postgres`` is platform.hp-postgres, as Airbyte's ``postgres`` is its current connector); the
    type it replaces keeps its own short name, or ``<name>-legacy`` when that was taken."""
    aliases = {card["type"]: [short_name(card["type"])] for card in cards}
    for card in cards:
        successor = (card.get("upgrade_available") or {}).get("type")
        if successor in aliases and short_name(successor).startswith(HP_PREFIX):
            plain = short_name(successor).removeprefix(HP_PREFIX)
            if aliases[card["type"]] == [plain]:
                aliases[card["type"]] = [plain + LEGACY_SUFFIX]
            aliases[successor].append(plain)
    owners: dict[str, str] = {}
    for source_type, names in aliases.items():
        for name in names:
            if name in owners:
                raise SystemExit(f"alias {name!r} of {source_type} is also {owners[name]}'s")
            owners[name] = source_type
    return aliases


def add_aliases(cards: list[dict[str, Any]]) -> None:
    """Put each card's ``aliases`` right after its display name."""
    aliases = aliases_for(cards)
    for index, card in enumerate(cards):
        items = list(card.items())
        items.insert(2, ("aliases", aliases[card["type"]]))
        cards[index] = dict(items)


def write_cards(cards: list[dict[str, Any]], out_dir: Path) -> None:
    """One file per card, 2-space indent, keys in the order built."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = set()
    for card in cards:
        path = out_dir / f"{card['type']}.json"
        path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.add(path.name)
    others = sorted(p.name for p in out_dir.glob("*.json") if p.name not in written)
    if others:
        print(f"note: {len(others)} other file(s) left untouched in {out_dir}: {others}")


# --- Property texts, the connect page's form layout, Stitch fidelity (issue 19) -----------------
# Data in scripts/card_docs/: properties.json (title and description by property name),
# types.json (per type: docs_url, texts that differ), layout.json (groups, order, labels of
# closed lists, hidden properties), stitch_docs.json (Stitch's setup guide per type, extracted
# from stitchdata/docs by card_docs/extract_stitch_docs.py). Decisions:
# * title and description go into each property's json_schema as standard JSON Schema
#   annotations: served to API clients, ignored by validators, usable by integrators' own forms.
#   A null json_schema ("any string") becomes {"type": "string", title, description}.
# * cron_expression (null in Stitch's cards) gets {"type": "string", "format": "quartz-cron"}:
#   the service checks it with a Quartz cron parser (app/catalog/formats.py).
# * form_layout (private, read by the connect page): the form's properties in display order with
#   their group and, for closed lists, option labels; hidden ones (internal per Stitch's docs)
#   are left out of it. Connection fields come first on database cards.
# * oauth.handshake_properties: a redirect_uri property of the oauth step receives the redirect
#   URI the managed handshake used; a required scope property the scopes it asked for.

CARD_DOCS = Path(__file__).resolve().parent / "card_docs"
FORM_PROPERTY_TYPES = ("user_provided", "user_provided_immutable", "user_provided_advanced")


def load_card_docs(folder: Path = CARD_DOCS) -> dict[str, Any]:
    """The data files, without their _about notes."""
    docs = {name: load_json(folder / f"{name}.json") for name in ("properties", "types", "layout", "stitch_docs")}
    for value in docs.values():
        value.pop("_about", None)
    return docs


def property_texts(docs: dict[str, Any], source_type: str, name: str) -> dict[str, str]:
    """Title and description of a property on a type: the shared text, then the type's own."""
    texts = dict(docs["properties"].get(name) or {})
    texts.update(((docs["types"].get(source_type) or {}).get("properties") or {}).get(name) or {})
    if "title" not in texts:
        raise SystemExit(f"{source_type}: property {name} has no title in scripts/card_docs/properties.json")
    return texts


def annotated_schema(name: str, schema: Any, texts: dict[str, str]) -> dict[str, Any]:
    """The property's json_schema with title and description (and cron_expression's format)."""
    annotated: dict[str, Any] = {"type": "string"} if schema is None else copy.deepcopy(schema)
    if name == "cron_expression" and schema is None:
        annotated["format"] = "quartz-cron"
    annotated["title"] = texts["title"]
    if texts.get("description"):
        annotated["description"] = texts["description"]
    return annotated


def remaining_oauth_inputs(card: dict[str, Any]) -> set[str]:
    """Required user_provided oauth-step properties the managed handshake does not fill."""
    oauth = card.get("oauth") or {}
    fills = {*(oauth.get("client_properties") or {}).values(), *(oauth.get("token_properties") or {}).values(),
             *(oauth.get("callback_properties") or {}).values(),
             *(oauth.get("handshake_properties") or {}).values(), *(oauth.get("input_properties") or [])}
    return {p["name"] for step in card["steps"] if step["type"] == "oauth" for p in step["properties"]
            if oauth and p["property_type"] == "user_provided" and p["name"] not in fills}


def form_group(prop: dict[str, Any], layout: dict[str, Any], database_like: bool) -> str:
    name = prop["name"]
    if database_like and name in layout["connection"]:
        return "connection"
    for group in ("ssh", "advanced"):
        if name in layout[group]:
            return group
    if prop["property_type"] == "user_provided_advanced":
        return "advanced"
    return "required" if prop["is_required"] else "optional"


def form_options(prop: dict[str, Any], layout: dict[str, Any]) -> list[dict[str, str]] | None:
    """Readable labels for a closed list (only where layout.json names the values)."""
    labels = layout["options"].get(prop["name"])
    return [{"value": value, "label": label} for value, label in labels.items()] if labels else None


def form_layout(card: dict[str, Any], entry: dict[str, Any], docs: dict[str, Any]) -> dict[str, Any]:
    """The connect page's layout of a card: its form's properties in order, grouped."""
    layout = docs["layout"]
    internal = {a["name"] for a in ((entry.get("doc") or {}).get("form_attributes") or []) if a.get("internal")}
    hidden = internal | set(layout["hidden"])
    remaining = remaining_oauth_inputs(card)
    candidates = [p for step in card["steps"] for p in step["properties"]
                  if (step["type"] == "form" and p["property_type"] in FORM_PROPERTY_TYPES)
                  or p["name"] in remaining]
    names = {p["name"] for p in candidates}
    database_like = any(name in names for name in layout["connection_needs_one_of"]) and "password" in names
    group_order = [g["id"] for g in layout["groups"]]
    rank = {name: index for index, name in enumerate(layout["order"])}
    fields = []
    for position, prop in enumerate(candidates):
        if prop["name"] in hidden:
            continue
        group = form_group(prop, layout, database_like)
        field: dict[str, Any] = {"name": prop["name"], "group": group}
        options = form_options(prop, layout)
        if options:
            field["options"] = options
        fields.append((group_order.index(group), rank.get(prop["name"], len(rank)), position, field))
    section: dict[str, Any] = {"groups": copy.deepcopy(layout["groups"]),
                               "fields": [field for *_, field in sorted(fields, key=lambda f: f[:3])]}
    hidden_here = sorted(hidden & names)
    if hidden_here:
        section["hidden"] = hidden_here
    # The provider's own guide where types.json names one, else Stitch's page for the type.
    docs_url = (docs["types"].get(card["type"]) or {}).get("docs_url") or docs["stitch_docs"].get(card["type"])
    if docs_url:
        section["docs_url"] = docs_url
    return section


def add_handshake_properties(card: dict[str, Any]) -> None:
    """What the managed handshake fills from what it knows itself (see the notes above)."""
    oauth = card.get("oauth")
    if oauth is None:
        return
    oauth_step = next(step for step in card["steps"] if step["type"] == "oauth")
    known: dict[str, str] = {}
    for prop in oauth_step["properties"]:
        if prop["name"] == "redirect_uri":
            known["redirect_uri"] = "redirect_uri"
        elif prop["name"] == "scope" and prop["is_required"]:
            known["scope"] = "scope"
    if known:
        oauth["handshake_properties"] = known


def apply_card_docs(cards: list[dict[str, Any]], source_types: list[dict[str, Any]],
                    docs: dict[str, Any]) -> None:
    """Texts, layouts and handshake properties for every card, in place."""
    entries = {entry["type"]: entry for entry in source_types}
    for source_type in docs["types"]:
        if source_type not in entries:
            raise SystemExit(f"scripts/card_docs/types.json names unknown type {source_type}")
    for card in cards:
        add_handshake_properties(card)
        for step in card["steps"]:
            for prop in step["properties"]:
                texts = property_texts(docs, card["type"], prop["name"])
                prop["json_schema"] = annotated_schema(prop["name"], prop["json_schema"], texts)
        card["form_layout"] = form_layout(card, entries[card["type"]], docs)
# --- Singer taps (issue 15) ------------------------------------------------------------------------
# The ``singer`` section of every type whose tap is on the Python package index under the type's own
# name (``tap-<name>``; where several taps exist, the singer-io one Stitch itself runs, because a
# Stitch report card's properties are that tap's config keys: tap-github rather than
# meltanolabs-tap-github, tap-postgres rather than pipelinewise-tap-postgres). Each requirement is
# the newest release listed in the package index snapshot up to the next major version (0.x: the
# next minor), or that exact release for a pre-release. The comment gives that release's month.
# The executable is the package's own name unless SINGER_EXECUTABLES says otherwise. Stitch's
# scheduling properties (STITCH_SCHEDULING) are Stitch's, not the tap's, and are dropped from the
# config. A type whose tap did not install or start on Python 3.11 here (docs/tap-coverage.json,
# written by scripts/tap_coverage.py) is marked ``installable: false`` with the reason.
# ``connector: "singer"`` is set unless the card already names another connector section.
SINGER_TAPS: dict[str, str] = {
    "platform.3plcentral": "tap-3plcentral>=1.0.2,<2",  # 2023-10
    "platform.activecampaign": "tap-activecampaign>=1.3.1,<2",  # 2025-12
    "platform.adroll": "tap-adroll>=1.2.1,<2",  # 2026-06
    "platform.adwords": "tap-adwords>=1.13.1,<2",  # 2021-10
    "platform.amazon-ads-dsp": "tap-amazon-ads-dsp>=0.0.9,<0.1",  # 2021-02
    "platform.amazon-sp": "tap-amazon-sp>=0.1.1,<0.2",  # 2021-06
    "platform.amplitude": "tap-amplitude>=1.3.0,<2",  # 2026-01
    "platform.appsflyer": "tap-appsflyer>=1.0.0,<2",  # 2026-02
    "platform.asana": "tap-asana>=2.5.1,<3",  # 2026-04
    "platform.autodesk-bim-360": "tap-autodesk-bim-360>=0.0.1,<0.1",  # 2020-09
    "platform.autopilot": "tap-autopilot>=0.3.0,<0.4",  # 2020-07
    "platform.bigcommerce": "tap-bigcommerce>=1.1.3,<2",  # 2023-10
    "platform.bing-ads": "tap-bing-ads>=2.3.3,<3",  # 2026-06
    "platform.braintree": "tap-braintree>=1.0.1,<2",  # 2026-06
    "platform.bronto": "tap-bronto>=1.0.2,<2",  # 2018-08
    "platform.calendly": "tap-calendly>=0.0.3,<0.1",  # 2024-01
    "platform.campaign-monitor": "tap-campaign-monitor>=1.1.0,<2",  # 2026-01
    "platform.chargebee": "tap-chargebee>=1.7.1,<2",  # 2026-06
    "platform.chargify": "tap-chargify>=0.1.0,<0.2",  # 2023-07
    "platform.circle-ci": "tap-circle-ci>=2.0.0,<3",  # 2026-08
    "platform.closeio": "tap-closeio>=1.6.6,<2",  # 2026-06
    "platform.clubspeed": "tap-clubspeed>=1.0.0,<2",  # 2018-12
    "platform.codat": "tap-codat>=0.5.3,<0.6",  # 2023-10
    "platform.copper": "tap-copper>=0.1.2,<0.2",  # 2026-06
    "platform.covid-19": "tap-covid-19>=0.0.10,<0.1",  # 2020-05
    "platform.criteo": "tap-criteo>=0.2.0,<0.3",  # 2020-01
    "platform.crossbeam": "tap-crossbeam>=0.4.1,<0.5",  # 2021-09
    "platform.darksky": "tap-darksky>=1.0.0,<2",  # 2020-04
    "platform.dayforce": "tap-dayforce>=0.3.2,<0.4",  # 2020-09
    "platform.db2": "tap-db2>=0.3.4,<0.4",  # 2019-04
    "platform.deputy": "tap-deputy>=1.1.2,<2",  # 2025-01
    "platform.dixa": "tap-dixa>=1.0.10,<2",  # 2026-06
    "platform.doubleclick-campaign-manager": "tap-doubleclick-campaign-manager>=1.5.0,<2",  # 2026-05
    "platform.dynamodb": "tap-dynamodb>=1.4.0,<2",  # 2025-01
    "platform.ebay": "tap-ebay>=0.1.0,<0.2",  # 2026-01
    "platform.eloqua": "tap-eloqua>=1.3.0,<2",  # 2021-03
    "platform.exacttarget": "tap-exacttarget>=1.7.1,<2",  # 2021-10
    "platform.exchangeratesapi": "tap-exchangeratesapi>=0.1.1,<0.2",  # 2019-11
    "platform.facebook": "tap-facebook>=1.26.0,<2",  # 2026-06
    "platform.freshdesk": "tap-freshdesk>=1.0.1,<2",  # 2026-06
    "platform.freshsales": "tap-freshsales>=0.1.1,<0.2",  # 2019-03
    "platform.frontapp": "tap-frontapp>=2.1.0,<3",  # 2026-02
    "platform.fullstory": "tap-fullstory>=1.0.4,<2",  # 2020-07
    "platform.ga360": "tap-ga360>=0.2.2,<0.3",  # 2025-03
    "platform.ga4": "tap-ga4>=0.4.0,<0.5",  # 2026-05
    "platform.gemini": "tap-gemini>=0.1.4,<0.2",  # 2020-01
    "platform.github": "tap-github>=4.0.0,<5",  # 2026-10
    "platform.gitlab": "tap-gitlab>=1.0.1,<2",  # 2026-06
    "platform.google-analytics": "tap-google-analytics>=1.1.3,<2",  # 2022-07
    "platform.google-search-console": "tap-google-search-console>=1.1.2,<2",  # 2026-06
    "platform.google-sheets": "tap-google-sheets>=3.1.2,<4",  # 2025-12
    "platform.harvest-forecast": "tap-harvest-forecast>=1.1.3,<2",  # 2021-07
    "platform.harvest": "tap-harvest>=3.1.1,<4",  # 2026-06
    "platform.heap": "tap-heap>=1.4.0,<2",  # 2025-07
    "platform.helpscout": "tap-helpscout>=1.2.2,<2",  # 2026-06
    "platform.hubspot": "tap-hubspot>=4.5.0,<5",  # 2026-07
    "platform.ilevel": "tap-ilevel>=1.0.2,<2",  # 2021-04
    "platform.impact": "tap-impact>=2.1.1,<3",  # 2025-01
    "platform.insided": "tap-insided>=0.0.2,<0.1",  # 2020-09
    "platform.intacct": "tap-intacct>=1.0.3,<2",  # 2023-08
    "platform.intercom": "tap-intercom>=2.2.5,<3",  # 2026-06
    "platform.invoiced": "tap-invoiced>=0.3.0,<0.4",  # 2026-01
    "platform.iterable": "tap-iterable>=1.0.1,<2",  # 2023-03
    "platform.jira": "tap-jira>=2.6.0,<3",  # 2025-11
    "platform.klaviyo": "tap-klaviyo>=1.1.5,<2",  # 2026-06
    "platform.kustomer": "tap-kustomer>=1.1.0,<2",  # 2023-09
    "platform.lever": "tap-lever>=1.1.0,<2",  # 2026-01
    "platform.linkedin-ads": "tap-linkedin-ads>=2.8.0,<3",  # 2026-08
    "platform.listrak": "tap-listrak>=2.0.8,<3",  # 2019-04
    "platform.liveperson": "tap-liveperson>=1.0.1,<2",  # 2020-07
    "platform.looker": "tap-looker>=0.1.0,<0.2",  # 2023-09
    "platform.lookml": "tap-lookml>=0.0.2,<0.1",  # 2021-01
    "platform.mailchimp": "tap-mailchimp>=1.3.3,<2",  # 2026-06
    "platform.mailshake": "tap-mailshake>=0.1.0,<0.2",  # 2026-02
    "platform.mambu": "tap-mambu>=4.6.1,<5",  # 2026-06
    "platform.marketo": "tap-marketo>=2.9.4,<3",  # 2026-07
    "platform.mavenlink": "tap-mavenlink>=0.0.3,<0.1",  # 2019-10
    "platform.mixpanel": "tap-mixpanel>=1.8.0,<2",  # 2026-06
    "platform.mongodb": "tap-mongodb>=3.3.0,<4",  # 2025-10
    "platform.ms-dynamics": "tap-ms-dynamics>=0.1.1,<0.2",  # 2024-01
    "platform.ms-teams": "tap-ms-teams>=1.1.0,<2",  # 2026-09
    "platform.mssql": "tap-mssql>=2.6.5,<3",  # 2024-10
    "platform.mysql": "tap-mysql>=1.17.7,<2",  # 2024-10
    "platform.nice-incontact": "tap-nice-incontact>=0.3.1,<0.4",  # 2024-01
    "platform.nikabot": "tap-nikabot>=1.0.8,<2",  # 2021-05
    "platform.onfleet": "tap-onfleet>=1.0.1,<2",  # 2023-10
    "platform.oracle": "tap-oracle>=1.3.0,<2",  # 2024-08
    "platform.ordway": "tap-ordway>=0.4.6,<0.5",  # 2026-06
    "platform.outbrain": "tap-outbrain>=1.0.0,<2",  # 2026-02
    "platform.outreach": "tap-outreach>=1.2.2,<2",  # 2026-06
    "platform.pagerduty": "tap-pagerduty>=0.3.0,<0.4",  # 2024-01
    "platform.pardot": "tap-pardot>=1.4.9,<2",  # 2025-10
    "platform.pendo": "tap-pendo>=1.2.0,<2",  # 2025-08
    "platform.pepperjam": "tap-pepperjam>=1.0.1,<2",  # 2023-11
    "platform.pipedrive": "tap-pipedrive>=2.1.0,<3",  # 2026-05
    "platform.platformpurple": "tap-platformpurple>=1.1.0,<2",  # 2019-07
    # singer-io's tap-postgres 0.2.1 (2021-11) does not build here (scripts/tap_coverage.py);
    # PipelineWise's fork of it takes the same config (dbname, filter_dbs, debug_lsn, itersize,
    # logical_poll_total_seconds …) and installs psycopg2-binary.
    "platform.postgres": "pipelinewise-tap-postgres>=2.1.0,<3",  # 2023-05
    "platform.quickbase": "tap-quickbase>=3.0.1,<4",  # 2026-06
    "platform.quickbooks": "tap-quickbooks>=2.5.0,<3",  # 2026-06
    "platform.recharge": "tap-recharge>=3.0.1,<4",  # 2026-06
    "platform.recurly": "tap-recurly>=1.1.1,<2",  # 2026-06
    "platform.redshift": "tap-redshift==1.0.0b9",  # 2018-09
    "platform.referral-saasquatch": "tap-referral-saasquatch>=2.1.0,<3",  # 2026-03
    "platform.responsys": "tap-responsys>=1.1.0,<2",  # 2021-11
    "platform.revinate": "tap-revinate>=1.0.0,<2",  # 2018-12
    "platform.ringcentral": "tap-ringcentral>=1.1.0,<2",  # 2026-01
    "platform.s3-csv": "tap-s3-csv>=2.3.1,<3",  # 2026-07
    "platform.saasoptics": "tap-saasoptics>=1.1.1,<2",  # 2020-09
    "platform.sailthru": "tap-sailthru>=1.0.2,<2",  # 2026-06
    "platform.salesforce": "tap-salesforce>=2.8.1,<3",  # 2026-05
    "platform.satismeter": "tap-satismeter>=0.1.1,<0.2",  # 2019-10
    "platform.selligent": "tap-selligent>=0.0.2,<0.1",  # 2018-11
    "platform.sendgrid": "tap-sendgrid>=1.0.4,<2",  # 2024-12
    "platform.sftp": "tap-sftp>=1.3.0,<2",  # 2026-01
    "platform.shiphero": "tap-shiphero>=1.1.6,<2",  # 2019-07
    "platform.shippo": "tap-shippo>=0.7.3,<0.8",  # 2018-11
    "platform.shopify": "tap-shopify>=3.13.0,<4",  # 2026-10
    "platform.signonsite": "tap-signonsite>=0.0.1,<0.1",  # 2020-10
    "platform.skubana": "tap-skubana>=0.0.3,<0.1",  # 2022-04
    "platform.slack": "tap-slack>=1.1.2,<2",  # 2025-01
    "platform.sling": "tap-sling>=0.1.1,<0.2",  # 2020-09
    "platform.snapchat-ads": "tap-snapchat-ads>=0.2.0,<0.3",  # 2025-02
    "platform.square": "tap-square>=2.3.1,<3",  # 2025-01
    "platform.stripe": "tap-stripe>=3.3.0,<4",  # 2025-12
    "platform.surveymonkey": "tap-surveymonkey>=3.0.0,<4",  # 2026-05
    "platform.swellrewards": "tap-swellrewards>=0.1.6,<0.2",  # 2020-06
    "platform.taboola": "tap-taboola>=0.3.1,<0.4",  # 2024-05
    "platform.tiktok-ads": "tap-tiktok-ads>=1.2.1,<2",  # 2026-09
    "platform.toast": "tap-toast>=0.0.2,<0.1",  # 2020-03
    "platform.toggl": "tap-toggl>=2.1.0,<3",  # 2026-02
    "platform.trello": "tap-trello>=1.1.3,<2",  # 2026-06
    "platform.twilio": "tap-twilio>=0.2.2,<0.3",  # 2026-06
    "platform.twitter-ads": "tap-twitter-ads>=1.0.0,<2",  # 2022-07
    "platform.typeform": "tap-typeform>=2.4.4,<3",  # 2026-06
    "platform.typo": "tap-typo>=0.2.1,<0.3",  # 2024-01
    "platform.ujet": "tap-ujet>=1.0.0,<2",  # 2020-09
    "platform.urban-airship": "tap-urban-airship>=0.9.0,<0.10",  # 2018-11
    "platform.uservoice": "tap-uservoice>=1.0.4,<2",  # 2023-11
    "platform.wootric": "tap-wootric>=0.5.3,<0.6",  # 2019-12
    "platform.workday-raas": "tap-workday-raas>=1.0.3,<2",  # 2023-11
    "platform.x-y": "tap-x-y>=0.0.2,<0.1",  # 2020-09
    "platform.xero": "tap-xero>=2.6.0,<3",  # 2026-05
    "platform.yotpo": "tap-yotpo>=2.0.6,<3",  # 2026-06
    "platform.youtube-analytics": "tap-youtube-analytics>=0.0.9,<0.1",  # 2021-03
    "platform.zendesk-chat": "tap-zendesk-chat>=0.5.1,<0.6",  # 2025-01
    "platform.zendesk": "tap-zendesk>=2.8.2,<3",  # 2026-06
    "platform.zoom": "tap-zoom>=2.1.1,<3",  # 2026-06
    "platform.zuora": "tap-zuora>=1.6.1,<2",  # 2026-06
}

SINGER_EXECUTABLES: dict[str, str] = {"platform.postgres": "tap-postgres"}
# Taps that import pkg_resources without requiring setuptools (it came with every virtual
# environment once; setuptools 81 and later no longer ship it), found by scripts/tap_coverage.py.
OLD_SETUPTOOLS = "setuptools<81"
SINGER_EXTRA_REQUIREMENTS: dict[str, list[str]] = {
    "platform.bing-ads": [OLD_SETUPTOOLS],
    "platform.nikabot": [OLD_SETUPTOOLS],
    "platform.typo": [OLD_SETUPTOOLS],
    # Imported by the tap, declared by none of its requirements.
    "platform.xero": ["six"],
}
STITCH_SCHEDULING = ("anchor_time", "cron_expression", "frequency_in_minutes", "image_version")
# Properties that name where a tap connects (a host, or a URL); the connector checks their values
# against the deployment's network rules before the tap runs.
SINGER_HOST_PROPERTIES = ("host", "ssh_host", "domain")
SINGER_URL_PROPERTIES = ("base_url", "api_url", "instance_url", "auth_base_url", "qb_url", "organization_uri",
                         "cluster_api_endpoint")
DEFAULT_TAP_COVERAGE = REPO_ROOT / "docs" / "tap-coverage.json"


def card_reason(reason: str) -> str:
    """A coverage reason fit for a card: without this machine's paths, at most 200 characters."""
    reason = re.sub(r" ?\((?:/[^)]*)\)", "", reason)
    reason = re.sub(r"'/[^']*/([^/']+)'", r"'\1'", reason)
    return reason if len(reason) <= 200 else reason[:199] + "…"


def singer_section(card: dict[str, Any], requirement: str, coverage: dict[str, Any]) -> dict[str, Any]:
    """The card's ``singer`` section: its tap, how properties become config, whether it installs."""
    package = re.split(r"[<>=!~ @\[]", requirement, maxsplit=1)[0]
    names = {p["name"] for step in card["steps"] for p in step["properties"]}
    section: dict[str, Any] = {
        "requirement": requirement,
        "executable": SINGER_EXECUTABLES.get(card["type"], package),
        "capabilities": ["discover"],
    }
    if card["type"] in SINGER_EXTRA_REQUIREMENTS:
        section["extra_requirements"] = SINGER_EXTRA_REQUIREMENTS[card["type"]]
    dropped = [name for name in STITCH_SCHEDULING if name in names]
    if dropped:
        section["config"] = {"drop": dropped}
    network = {"hosts": [n for n in SINGER_HOST_PROPERTIES if n in names],
               "urls": [n for n in SINGER_URL_PROPERTIES if n in names]}
    if network["hosts"] or network["urls"]:
        section["network"] = {key: value for key, value in network.items() if value}
    result = coverage.get(card["type"])
    if result is not None and not result.get("counted", False):
        section["installable"] = False
        section["not_installable_reason"] = card_reason(result.get("reason") or "did not install or start here")
    return section


def add_singer_sections(cards: list[dict[str, Any]], coverage_path: Path) -> dict[str, int]:
    """Give every type in SINGER_TAPS its ``singer`` section; counts for the summary."""
    coverage = load_json(coverage_path)["types"] if coverage_path.exists() else {}
    counts = {"declared": 0, "not_installable": 0}
    for card in cards:
        requirement = SINGER_TAPS.get(card["type"])
        if requirement is None:
            continue
        card["singer"] = singer_section(card, requirement, coverage)
        if not any(key in card for key in ("auth", "api", "database")):
            card["connector"] = "singer"
        counts["declared"] += 1
        counts["not_installable"] += card["singer"].get("installable", True) is False
    unknown = sorted(set(SINGER_TAPS) - {card["type"] for card in cards})
    if unknown:
        raise SystemExit(f"SINGER_TAPS names types with no card: {unknown}")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Build every card and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-types", type=Path, default=DEFAULT_SOURCE_TYPES)
    parser.add_argument("--oauth-providers", type=Path, default=DEFAULT_OAUTH_PROVIDERS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tap-coverage", type=Path, default=DEFAULT_TAP_COVERAGE)
    args = parser.parse_args(argv)

    source_types = load_json(args.source_types)["source_types"]
    nango = {p["name"]: p for p in load_json(args.oauth_providers)["providers"]}
    cards, derived, without_oauth = build_cards(source_types, nango)
    apply_card_docs(cards, source_types, load_card_docs())
    singer = add_singer_sections(cards, args.tap_coverage)
    add_aliases(cards)
    write_cards(cards, args.out)

    with_oauth = [c["type"] for c in cards if "oauth" in c]
    no_oauth_step = [c["type"] for c in cards if not any(s["type"] == "oauth" for s in c["steps"])]
    print(f"wrote {len(cards)} report cards to {args.out}")
    print(f"display name derived from the type for {len(derived)}: {', '.join(derived)}")
    print(f"with a managed oauth section: {len(with_oauth)}")
    databases = [c["type"] for c in cards if c.get("connector") == "database"]
    print(f"database connector: {len(databases)}: {', '.join(databases)}")
    print(f"without an oauth section: {len(cards) - len(with_oauth)}")
    print(f"  {len(no_oauth_step)} have no oauth step (credentials in the form, or none)")
    for source_type, reason in sorted(without_oauth.items()):
        print(f"  {source_type}: oauth step, but {reason}")
    print(f"with a singer section: {singer['declared']} ({singer['not_installable']} marked not installable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
