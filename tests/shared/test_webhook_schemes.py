"""Signature schemes (shared/webhooks/schemes.py) against each sender's published example vectors and
against signatures computed here as the senders document them (tests/shared/webhook_signers.py).
Freshness and replays are the receiver's (test_webhook_receiver.py)."""

from __future__ import annotations

import json

import pytest
from starlette.datastructures import Headers

from shared.config import WEBHOOK_SOURCES_VAR
from shared.errors import ConfigurationError, Unauthorized
from shared.webhooks.schemes import verify
from shared.webhooks.sources import Source, parse_sources
from tests.shared import webhook_signers as sign

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SOURCES = parse_sources(json.dumps({
    "github": {"scheme": "github", "secrets": ["new-secret", "old-secret"], "job": {"push": "a", "*": "b"}},
    "stripe": {"scheme": "stripe", "secrets": ["whsec_stripe_new", "whsec_stripe_old"], "job": "a"},
    "svix": {"scheme": "standard", "secrets": [STANDARD_SECRET], "job": "a"},
    "slack": {"scheme": "slack", "secrets": ["8f742231b10e8888abcd99yyyzzz85a5"], "job": "a"},
    "acme": {"scheme": "hmac", "secrets": ["acme-secret"], "header": "X-Acme-Signature", "prefix": "sha256=",
             "encoding": "hex", "id_header": "X-Acme-Delivery", "job": "a"},
}))  # fmt: skip
BODY = b'{"id": "evt_1", "type": "invoice.paid", "amount": 1}'


def check(source: str, headers: dict[str, str], body: bytes = BODY) -> None:
    verify(SOURCES[source], Headers(headers), body)


def refused(source: str, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(Unauthorized) as caught:
        check(source, headers, body)
    return caught.value.detail


def test_github_documented_example_vector_verifies() -> None:
    # docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation".
    source = parse_sources(json.dumps({"gh": {"scheme": "github", "secrets": ["It's a Secret to Everybody"],
                                              "job": "a"}}))["gh"]  # fmt: skip
    headers = {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
               "X-GitHub-Delivery": "d-1", "X-GitHub-Event": "push"}  # fmt: skip
    verified = verify(source, Headers(headers), b"Hello, World!")
    assert (verified.delivery_id, verified.event, verified.timestamp_s) == ("d-1", "push", None)
    with pytest.raises(Unauthorized):
        verify(source, Headers(headers), b"Hello, World?")


def test_standard_webhooks_documented_example_vector_verifies() -> None:
    # The Standard Webhooks spec's (and Svix's) example: this secret, id, timestamp and payload.
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,bm9ldHUjKzFob2VudXRob2VodWUzMjRvdWVvdW9ldQo= "  # another key's, first
                                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}  # fmt: skip
    verified = verify(SOURCES["svix"], Headers(headers), b'{"test": 2432232314}')
    assert (verified.delivery_id, verified.timestamp_s) == ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330)


def test_slack_documented_example_vector_verifies() -> None:
    # api.slack.com, "Verifying requests from Slack": the worked example's secret, timestamp and body.
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGl"
            b"gcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")  # fmt: skip
    headers = {"X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
               "X-Slack-Request-Timestamp": "1531420618"}  # fmt: skip
    assert verify(SOURCES["slack"], Headers(headers), body).timestamp_s == 1531420618


@pytest.mark.parametrize(
    ("source", "headers"),
    [
        ("github", sign.github("new-secret", BODY)),
        ("github", sign.github("old-secret", BODY)),  # rotation: the old secret still verifies
        ("stripe", sign.stripe(["whsec_stripe_old"], BODY)),
        ("stripe", sign.stripe(["whsec_unknown", "whsec_stripe_new"], BODY)),  # any v1 of several
        ("svix", sign.standard(STANDARD_SECRET, BODY)),
        ("slack", sign.slack("8f742231b10e8888abcd99yyyzzz85a5", BODY)),
        ("acme", sign.acme("acme-secret", BODY)),
    ],
)
def test_a_signature_made_as_the_sender_documents_verifies(source: str, headers: dict[str, str]) -> None:
    check(source, headers)


@pytest.mark.parametrize(
    ("source", "headers"),
    [
        ("github", sign.github("wrong", BODY)),
        ("stripe", sign.stripe(["whsec_wrong"], BODY)),
        ("svix", sign.standard("whsec_" + "d3Jvbmc=", BODY)),
        ("slack", sign.slack("wrong", BODY)),
        ("acme", sign.acme("wrong", BODY)),
    ],
)
def test_a_wrong_secret_is_refused_without_saying_anything_about_the_secret(
    source: str, headers: dict[str, str]
) -> None:
    detail = refused(source, headers)
    assert "does not match" in detail
    assert "secret" in detail
    assert "wrong" not in detail


@pytest.mark.parametrize(
    ("source", "headers"),
    [
        ("github", sign.github("new-secret", BODY)),
        ("stripe", sign.stripe(["whsec_stripe_new"], BODY)),
        ("svix", sign.standard(STANDARD_SECRET, BODY)),
        ("slack", sign.slack("8f742231b10e8888abcd99yyyzzz85a5", BODY)),
        ("acme", sign.acme("acme-secret", BODY)),
    ],
)
def test_a_tampered_body_is_refused(source: str, headers: dict[str, str]) -> None:
    refused(source, headers, BODY.replace(b"1}", b"2}"))
    refused(source, headers, BODY + b" ")  # a re-serialised body is not the signed one either


@pytest.mark.parametrize(
    ("source", "missing"),
    [("github", "X-Hub-Signature-256"), ("stripe", "Stripe-Signature"), ("svix", "webhook-signature"),
     ("svix", "webhook-timestamp"), ("slack", "X-Slack-Signature"), ("slack", "X-Slack-Request-Timestamp"),
     ("acme", "X-Acme-Signature")],
)  # fmt: skip
def test_a_missing_header_is_refused_and_named(source: str, missing: str) -> None:
    signers = {"github": lambda: sign.github("new-secret", BODY),
               "stripe": lambda: sign.stripe(["whsec_stripe_new"], BODY),
               "svix": lambda: sign.standard(STANDARD_SECRET, BODY), "acme": lambda: sign.acme("acme-secret", BODY),
               "slack": lambda: sign.slack("8f742231b10e8888abcd99yyyzzz85a5", BODY)}  # fmt: skip
    headers = {k: v for k, v in signers[source]().items() if k != missing}
    assert missing.lower() in refused(source, headers).lower()


def test_stripe_takes_the_event_id_and_type_from_the_verified_body() -> None:
    verified = verify(SOURCES["stripe"], Headers(sign.stripe(["whsec_stripe_new"], BODY, timestamp=1700000000)), BODY)
    assert (verified.delivery_id, verified.event, verified.timestamp_s) == ("evt_1", "invoice.paid", 1700000000)


def test_only_the_headers_that_matter_are_kept_and_never_a_signature() -> None:
    headers = sign.github("new-secret", BODY, delivery="d-9") | {"Cookie": "x", "X-GitHub-Hook-ID": "42"}
    kept = verify(SOURCES["github"], Headers(headers), BODY).headers
    assert kept == {"x-github-event": "push", "x-github-delivery": "d-9", "x-github-hook-id": "42",
                    "content-type": "application/json"}  # fmt: skip


def test_jobs_by_event_type_fall_back_to_the_star_job() -> None:
    source: Source = SOURCES["github"]
    assert (source.job_for("push"), source.job_for("issues"), source.job_for(None)) == ("a", "b", "b")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ('{"x": {"scheme": "nope", "secrets": ["s"], "job": "a"}}', "scheme"),
        ('{"x": {"scheme": "hmac", "secrets": ["s"], "job": "a"}}', "header"),
        ('{"x": {"scheme": "standard", "secrets": ["whsec_not base64!"], "job": "a"}}', "whsec_"),
        ('{"x": {"scheme": "github", "secrets": [], "job": "a"}}', "secrets"),
        ('{"x": {"scheme": "github", "secrets": ["s"], "job": "missing.job"}}', "missing.job"),
        ("[1, 2]", "object"),
    ],
)
def test_a_bad_configuration_names_the_variable_and_the_problem_never_a_secret(config: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_sources(config, frozenset({"a"}))
    assert caught.value.variable == WEBHOOK_SOURCES_VAR
    assert problem in str(caught.value)
    assert "not base64!" not in str(caught.value)
