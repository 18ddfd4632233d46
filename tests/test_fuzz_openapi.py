"""Fuzzing from the contract: schemathesis generates requests for every operation of the service's
own ``/openapi.json`` and sends them to the WSGI app, as an account and as the operator.

Each operation gets schema-valid (positive) and schema-violating (negative) cases; half of them
name the seeded objects (an account, its second token, a discovered source with streams, an OAuth
app override) in their path, so they reach real rows instead of 404s. Every response must:

- never be a 5xx (``not_a_server_error``);
- have a status, content type, headers and body the document declares (schemathesis's
  conformance checks), and a negative case must be refused with a 4xx (413 included);
- if it is an error, be the one error shape ``{"error": {"type", "message", "details"}}``.

- list only statuses the document declares for the operation (``status_code_conformance``: the
  document has no catch-all ``default``, app/extensions.py);
- if the case is schema-valid, not be refused (``positive_data_acceptance``: no 400 or 422), except
  where a rule depends on data no schema holds, listed with its reason in :data:`DATA_RULES` and
  :data:`FREE_FORM`.

The number of cases sent is written to ``tests/artifacts/fuzz-cases.txt``. By default each
operation gets ``FAST_EXAMPLES`` cases per mode and principal (the run stays well under a minute);
``CONNECT_SLOW_TESTS=1`` (as .ci/run sets) raises it to ``SLOW_EXAMPLES``;
``CONNECT_FUZZ_EXAMPLES`` overrides both.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from app import db
from app.db import begin_write
from app.jobs.worker import Worker
from app.paths import is_airbyte_path
from app.webhooks.outbox import emit
from app.wiring import services

from .conftest import OPERATOR_TOKEN
from .connectors_support import running_data_api

FAST_EXAMPLES = 6
SLOW_EXAMPLES = 15
ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "fuzz-cases.txt"
DISCOVERY_TYPE = "test.discovery"  # tests/report_cards: discovered from the data API test server
DATA_TOKEN = "fuzz-data-token"
OAUTH_TYPE = "platform.hubspot"
# The suite's secrets scan (tests/conftest.py) registers every secret_id a request sends as a secret.
# Hypothesis reuses a generated string in other fields, and errors rightly echo some of those (an
# unknown source_type), which the scan would take for a leak. So string secret_ids are sent as this
# one value: a generated one would be just as unknown to the service, and a copy of this one in any
# response is a real leak.
FUZZ_SECRET_ID = "sid_fuzz_" + "0" * 32

# Rules of data the document cannot hold, by operation: the refusals a schema-valid request may get.
# Everything a schema can say is in the document instead (NUL-free strings, display names without
# control characters, ids and bounds); each line here is a rule over stored or catalog data.
CURSOR = (400, "a cursor must be one this service gave out")
PASSED_BACK = (400, "the proxy passes the provider's own answer back, whatever its status")
DATA_RULES: dict[str, list[tuple[int, str]]] = {
    "GET /v4/sources": [CURSOR],
    "GET /v4/sources/{source_id}/streams": [CURSOR],
    "GET /v4/webhooks/{webhook_id}/deliveries": [CURSOR],
    "POST /v4/sources": [(422, "the type is one of the catalog's, the properties are that type's")],
    "PUT /v4/sources/{source_id}": [(422, "the properties are the source type's")],
    "PUT /v4/sources/{source_id}/streams/metadata": [(422, "the streams and fields are the source's")],
    "POST /v4/oauth/initiate": [(422, "an OAuth type of the catalog, its inputs, a redirect_url the account allows")],
    "GET /v4/oauth/callback": [(400, "a state this service issued")],
    "PUT /v4/oauth/credentials": [(422, "an OAuth type of the catalog and its configuration")],
    "GET /v4/oauth/credentials/spec": [(422, "an OAuth type of the catalog")],
    "POST /v4/connect/sessions": [(422, "one of source_type, allowed_types or source_id; types of the catalog; "
                                        "a redirect_url the account allows")],
    "POST /v4/webhooks": [(422, "an https URL of a public host")],
    "PUT /v4/webhooks/{webhook_id}": [(422, "an https URL of a public host")],
    "PUT /v4/accounts/{account_id}": [(422, "redirect_url_allowlist entries are https URLs")],
    "POST /v4/sources/{source_id}/execute": [(422, "an entity (stream) of the source")],
    **{f"{method} /v4/sources/{{source_id}}/proxy/{{path}}": [PASSED_BACK, (422, "a plain path under the base URL")]
       for method in ("GET", "POST", "PUT", "PATCH", "DELETE")},
    "POST /api/v1/connectors/sources/{source_id}/execute": [(422, "an entity (stream) of the source")],
    "GET /api/v1/oauth/credentials/spec": [(422, "an OAuth connector type of the catalog")],
    "PUT /api/v1/oauth/credentials": [(422, "an OAuth connector type of the catalog and its configuration")],
    "POST /api/v1/integrations/connectors": [(422, "a connector type of the catalog, its properties")],
    "POST /api/v1/integrations/connectors/oauth/initiate": [(422, "an OAuth connector type of the catalog, "
                                                                  "its inputs, a redirect_url the account allows")],
    "POST /v1/sources": [(422, "a source type of the catalog, its configuration")],
    "POST /v1/sources/initiateOAuth": [(422, "an OAuth source type of the catalog, its inputs, a redirectUrl "
                                             "the account allows")],
    "PUT /v1/workspaces/{workspaceId}/oauthCredentials": [(422, "an OAuth source type of the catalog and its "
                                                                "configuration")],
}
# A free-form object in a body (a source's properties, stream metadata, OAuth inputs): OpenAPI 3.0
# has no ``propertyNames``, so it cannot say that its keys hold no NUL, nor bound the integers of
# values it does not type; app/request_checks.py refuses both (400). Found from the document.
FREE_FORM = (400, "a free-form object's keys hold no NUL and its integers fit in 64 bits")
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]  # schemathesis's default, less 5xx
CHECKS = {
    "status_code_conformance": {"enabled": True},
    "positive_data_acceptance": {"enabled": True, "expected-statuses": ACCEPTED},
    # 413 is how this service refuses a body over CONNECT_MAX_BODY_BYTES; the rest is the default.
    "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422,
                                                      428, 429]},
}


def fuzz_config(document: dict) -> SchemathesisConfig:  # type: ignore[type-arg]
    """The checks, with each operation's data rules (:data:`DATA_RULES`, :data:`FREE_FORM`)."""
    rules = {name: list(found) for name, found in DATA_RULES.items()}
    for name in free_form_operations(document):
        rules.setdefault(name, []).append(FREE_FORM)
    return SchemathesisConfig.from_dict({"checks": CHECKS, "operations": [
        {"include-name": name, "checks": {"positive_data_acceptance": {
            "expected-statuses": ACCEPTED + sorted({str(status) for status, _why in found})}}}
        for name, found in rules.items()]})


def free_form_operations(document: dict) -> list[str]:  # type: ignore[type-arg]
    names = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}) if isinstance(operation, dict) else {}
            for content in body.get("content", {}).values():
                if _has_free_form(content.get("schema", {}), document["components"]["schemas"], set()):
                    names.append(f"{method.upper()} {path}")
    return names


def _has_free_form(schema: dict, components: dict, seen: set[str]) -> bool:  # type: ignore[type-arg]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return name not in seen and _has_free_form(components[name], components, seen | {name})
    if schema.get("type") == "object" and not schema.get("properties") or schema.get("additionalProperties"):
        return True
    children = [*(schema.get("properties") or {}).values(), *schema.get("anyOf", []), *schema.get("oneOf", []),
                *schema.get("allOf", [])]
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    return any(_has_free_form(child, components, seen) for child in children)


CASES: Counter[str] = Counter()


def examples_per_operation() -> int:
    if os.environ.get("CONNECT_FUZZ_EXAMPLES"):
        return int(os.environ["CONNECT_FUZZ_EXAMPLES"])
    return SLOW_EXAMPLES if os.environ.get("CONNECT_SLOW_TESTS") == "1" else FAST_EXAMPLES


def error_shape(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """Every error of every layer is {"error": {"type", "message", "details"}}, as JSON; on the
    Airbyte dialect's paths, Airbyte's problem document {"type", "title", "status", "detail", "errors"};
    a provider's answer the proxy passes back (``Connect-Proxied: source``) is the provider's own."""
    if response.status_code < 400 or response.headers.get("connect-proxied"):
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    if is_airbyte_path(case.formatted_path):
        assert isinstance(body, dict) and set(body) == {"type", "title", "status", "detail", "errors"}, body
        assert body["status"] == response.status_code and body["detail"] and isinstance(body["errors"], list), body
        return
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"type", "message", "details"}, body
    assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["details"], list), body


@dataclass
class Seed:
    """The objects the cases may name in their path, and the token to call with."""

    account_id: int
    token: str
    token_id: int
    source_id: int
    stream_id: int
    webhook_id: int
    delivery_id: int

    def path_parameters(self) -> dict[str, object]:
        return {"account_id": self.account_id, "token_id": self.token_id, "source_id": self.source_id,
                "stream_id": self.stream_id, "source_type": OAUTH_TYPE, "webhook_id": self.webhook_id,
                "workspaceId": str(self.account_id),
                "delivery_id": self.delivery_id}


@pytest.fixture(scope="module")
def data_api():
    with running_data_api(DATA_TOKEN) as api:
        yield api


@pytest.fixture(scope="module", autouse=True)
def _record_case_count():
    yield
    if not CASES:
        return
    total = sum(v for k, v in CASES.items() if k.startswith("principal:"))
    detail = ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
    line = (f"schemathesis cases: {total} ({detail}); "
            f"max_examples per operation, mode and principal: {examples_per_operation()}\n")
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(line)
    print("\n" + line)


def seed(app, client, data_api) -> Seed:  # type: ignore[no-untyped-def]
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    account = client.post("/v4/accounts", json={"name": "Fuzzed"}, headers=operator).get_json()
    headers = {"Authorization": f"Bearer {account['token']}"}
    second = client.post(f"/v4/accounts/{account['id']}/tokens", headers=operator).get_json()
    created = client.post("/v4/sources", headers=headers, json={
        "type": DISCOVERY_TYPE, "display_name": "Fuzzed " + os.urandom(3).hex(),
        "properties": {"api_url": data_api.base_url, "api_token": DATA_TOKEN}})
    assert created.status_code == 201, created.get_json()
    source_id = created.get_json()["id"]
    worker, deadline = Worker(app, services(app).jobs, poll_interval=0.05), time.monotonic() + 20
    while worker.run_once():
        assert time.monotonic() < deadline, "discovery did not finish"
    streams = client.get(f"/v4/sources/{source_id}/streams", headers=headers).get_json()
    assert streams, "the seeded source has no streams"
    override = client.put("/v4/oauth/credentials", headers=headers, json={
        "source_type": OAUTH_TYPE, "configuration": {"client_id": "fuzz", "client_secret": "fuzz-secret"}})
    assert override.status_code == 200, override.get_json()
    webhook = client.post("/v4/webhooks", headers=headers, json={"url": "https://hooks.example/fuzz",
                                                                 "events": ["*"]})
    assert webhook.status_code == 201, webhook.get_json()
    with db.get_db(app).Session() as session, begin_write(session):  # a delivery (never sent) to name
        emit(session, account["id"], "source.deleted", {}, source_id=source_id)
    deliveries = client.get(f"/v4/webhooks/{webhook.get_json()['id']}/deliveries", headers=headers).get_json()
    return Seed(account["id"], account["token"], second["id"], source_id, streams[0]["stream_id"],
                webhook.get_json()["id"], deliveries["data"][0]["id"])


def seed_intact(client, seed: Seed) -> bool:  # type: ignore[no-untyped-def]
    """Did the last operation's cases delete the source or the webhook, or revoke the token? Then
    seed again."""
    headers = {"Authorization": f"Bearer {seed.token}"}
    response = client.get(f"/v4/sources/{seed.source_id}/streams/{seed.stream_id}", headers=headers)
    delivery = client.get(f"/v4/webhooks/{seed.webhook_id}/deliveries/{seed.delivery_id}", headers=headers)
    return response.status_code == 200 and delivery.status_code == 200


def fuzz_operation(operation, mode: GenerationMode, token: str, seed: Seed, failures: list[str],
                   principal: str) -> None:
    names = re.findall(r"{(\w+)}", operation.path)
    fixed = {name: value for name, value in seed.path_parameters().items() if name in names}
    strategy = operation.as_strategy(generation_mode=mode)
    if fixed:
        strategy = st.one_of(strategy, operation.as_strategy(generation_mode=mode, path_parameters=fixed))

    @given(case=strategy)
    @settings(max_examples=examples_per_operation(), deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        for name in ("secret_id", "server_side_oauth_secret_id", "secretId"):
            if isinstance(case.body, dict) and isinstance(case.body.get(name), str):
                case.body[name] = FUZZ_SECRET_ID
        CASES[f"principal:{principal}"] += 1
        CASES[f"mode:{mode.value}"] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, additional_checks=[error_shape])

    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:  # schemathesis raises a FailureGroup
        failures.append(f"{principal} {mode.value} {operation.label}:\n{failure}")
        for found in getattr(failure, "exceptions", [failure]):  # the artifact counts them by check
            CASES[f"failure:{getattr(found, 'title', type(found).__name__)}"] += 1


@pytest.mark.parametrize("principal", ["account", "operator"])
def test_every_operation_survives_generated_requests(app, client, data_api, principal):
    config = fuzz_config(client.get("/openapi.json").get_json())
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    current = seed(app, client, data_api)
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if not seed_intact(client, current):
                current = seed(app, client, data_api)
            token = current.token if principal == "account" else OPERATOR_TOKEN
            fuzz_operation(operation, mode, token, current, failures, principal)
    CASES[f"operations:{principal}"] = len(operations)
    assert not failures, "\n\n".join(failures)
