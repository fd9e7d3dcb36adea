"""The GitHub webhook receiver: verify, validate, dedupe, queue. Nothing slow happens here.

GitHub gives up after 10 seconds, so the request only checks the signature,
decides from the payload alone whether anyone routes the event, claims the
delivery id and queues it to the `events` queue; the handler runs in a worker.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from flask import Blueprint, Request, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from api.errors import ApiError
from orchestrator.dispatch import QueueUnavailable, Write
from orchestrator.github import signature
from orchestrator.github.routing import GitHubConfig, event_identity, match
from orchestrator.metrics import registry as metrics
from orchestrator.steps import Step
from orchestrator.store import StoreUnavailable

log = logging.getLogger("orchestrator.webhooks")

bp = Blueprint("webhooks", __name__)

# GitHub sends GUIDs and lower-case event names; anything else is not GitHub.
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EVENT = re.compile(r"^[a-z0-9_]{1,64}$")
_CONFIG_KEY = "orchestrator.github_config"


@bp.record_once
def _announce(state: BlueprintSetupState) -> None:
    """Say at start-up, once, why every delivery will be refused."""
    settings = state.app.extensions["orchestrator"].settings
    if not settings.github_webhook_secrets:
        log.warning("GITHUB_WEBHOOK_SECRET is not set: POST /webhooks/github refuses every delivery")
    state.app.extensions[_CONFIG_KEY] = GitHubConfig.from_settings(settings)


def _answer(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    # orjson straight into a response: jsonify's provider machinery showed in the profile.
    return current_app.response_class(orjson.dumps(body), mimetype="application/json"), status


def _decided(event: str, status: int, body: dict[str, Any]) -> tuple[Response, int]:
    """Answer a signed delivery, counting it by event and decision (pong, ignored, duplicate, queued)."""
    metrics.webhook_received(event, body["status"])
    return _answer(status, body)


def _read_body(req: Request, limit: int) -> bytes:
    if req.content_length is not None and req.content_length > limit:
        raise ApiError(f"the body is larger than {limit} bytes", status=413, code="payload_too_large")
    body = req.stream.read(limit + 1)  # also bounds a chunked body without Content-Length
    if len(body) > limit:
        raise ApiError(f"the body is larger than {limit} bytes", status=413, code="payload_too_large")
    return body


def _parse_json(body: bytes) -> dict[str, Any]:
    # orjson: parsing the whole payload is the biggest single cost of a delivery, and it is
    # a third of json's; it also refuses invalid UTF-8 and nesting deeper than 1024 levels
    # (3.10+; an older orjson crashed on deep nesting, hence the version floor in setup.cfg).
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("the body is not valid UTF-8", code="malformed_body") from None
        if "depth" in exc.msg or "recursion" in exc.msg:
            raise ApiError("the JSON body is nested too deeply", code="malformed_body") from None
        raise ApiError(f"the body is not valid JSON: {exc.msg} at position {exc.pos}", code="malformed_body") from None
    if not isinstance(payload, dict):
        raise ApiError("the JSON body must be an object", code="malformed_body")
    return payload


def _check_content_type(req: Request) -> None:
    if req.environ.get("CONTENT_TYPE") == "application/json":  # what GitHub sends: nothing to parse
        return
    mimetype = req.mimetype
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(
            "send the payload as application/json (webhook setting 'Content type')",
            status=415,
            code="unsupported_media_type",
        )
    if ";" not in req.content_type:  # no parameters: nothing more to check
        return
    charset = req.mimetype_params.get("charset")
    if charset and charset.lower().replace("_", "-") not in {"utf-8", "utf8"}:
        raise ApiError("the payload must be UTF-8", status=415, code="unsupported_media_type")


@bp.post("/webhooks/github")
def github() -> tuple[Response, int]:
    """Accept one GitHub delivery: 202 queued or ignored, 200 ping or duplicate."""
    resources = current_app.extensions["orchestrator"]
    settings = resources.settings
    if not settings.github_webhook_secrets:
        raise ApiError("webhooks are disabled: no webhook secret is configured", status=403, code="webhooks_disabled")
    req: Request = request._get_current_object()  # type: ignore[attr-defined]  # the proxy once, not per use
    environ = req.environ  # headers straight from the WSGI environ: what req.headers.get would read
    body = _read_body(req, settings.webhook_max_bytes)
    if not signature.verify(body, environ.get("HTTP_X_HUB_SIGNATURE_256"), settings.github_webhook_secrets):
        raise ApiError("missing or invalid X-Hub-Signature-256", status=401, code="bad_signature")
    event = environ.get("HTTP_X_GITHUB_EVENT", "")
    delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
    if not _EVENT.fullmatch(event):
        raise ApiError("missing or invalid X-GitHub-Event header", code="missing_header")
    if not _DELIVERY.fullmatch(delivery):
        raise ApiError("missing or invalid X-GitHub-Delivery header", code="missing_header")
    _check_content_type(req)
    payload = _parse_json(body)

    if event == "ping":
        return _decided(event, 200, {"status": "pong", "delivery": delivery})
    config = current_app.extensions.get(_CONFIG_KEY) or GitHubConfig.from_settings(settings)
    decision = match(event, payload, config)
    if not decision.routed:
        # The reason also goes to GitHub's delivery log in the answer; here for whoever reads ours.
        log.info("webhook %s (%s) ignored: %s", delivery, event, decision.reason)
        return _decided(event, 202, {"status": "ignored", "reason": decision.reason, "delivery": delivery})

    store = resources.store()
    # A signed payload sent again under a new delivery id (a replay) is the same event.
    identity = event_identity(event, payload)
    if identity and not store.claim_event(identity, delivery, settings.delivery_ttl_seconds):
        log.warning("delivery %s repeats event %s that another delivery brought; ignored", delivery, identity)
        return _decided(
            event,
            200,
            {
                "status": "duplicate",
                "delivery": delivery,
                "reason": "the same event was already received under another delivery id",
            },
        )
    # The body is kept once, as received, in the delivery's pending copy (which
    # the reconcile loop re-sends from if the queue message is lost); the queue
    # message names only the delivery, and the worker reads the body from the copy.
    # It goes to Redis as the bytes received (orjson has already refused invalid UTF-8).
    # Claim, keep and queue in one atomic step (or, on another broker, claim and keep, then queue).
    write = Write(
        store,
        lambda enqueue: store.claim_delivery(
            delivery, settings.delivery_ttl_seconds, enqueue=enqueue, pending=(event, body)
        ),
    )
    try:
        if not resources.dispatcher().send(Step.HANDLE_EVENT, delivery, event, write=write):
            return _decided(event, 200, {"status": "duplicate", "delivery": delivery})
    except QueueUnavailable:
        # Not queued: forget the claim so GitHub's redelivery (same id) is processed.
        try:
            store.drop_pending_event(delivery)
            store.release_delivery(delivery)
        except StoreUnavailable:
            log.error("delivery %s was claimed but not queued, and the claim could not be released", delivery)
        raise
    return _decided(event, 202, {"status": "queued", "delivery": delivery})
