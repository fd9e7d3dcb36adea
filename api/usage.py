"""What services spend: usage per day and per agent (/api/v1/services/<service>/usage)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, Response, request

from api.auth import protect
from api.errors import ApiError
from api.tasks import _json, _service, _store

bp = protect(Blueprint("usage", __name__, url_prefix="/api/v1/services"))

MAX_DAYS = 366
DEFAULT_DAYS = 30


def _since(raw: str | None, today: date) -> date:
    if raw is None:
        return today - timedelta(days=DEFAULT_DAYS - 1)
    try:
        since = date.fromisoformat(raw)
    except ValueError:
        raise ApiError(
            "since must be a date, YYYY-MM-DD", code="validation_error", errors={"since": ["expected YYYY-MM-DD"]}
        ) from None
    if since > today:
        raise ApiError("since is in the future", code="validation_error", errors={"since": ["in the future"]})
    if (today - since).days >= MAX_DAYS:
        raise ApiError(
            f"at most {MAX_DAYS} days at once",
            code="validation_error",
            errors={"since": [f"at most {MAX_DAYS} days back"]},
        )
    return since


@bp.get("/<service>/usage")
def service_usage(service: str) -> Response:
    """A service's usage per UTC day and per agent since `since` (default: the last 30 days)."""
    service = _service(service)
    today = datetime.now(UTC).date()
    since = _since(request.args.get("since"), today)
    days = [(since + timedelta(days=n)).isoformat() for n in range((today - since).days + 1)]
    found = _store().service_usage(service, days)
    rows = []
    total: dict[str, float | int] = {}
    for day in days:
        agents = found.get(day)
        if not agents:
            continue
        day_total: dict[str, float | int] = {}
        for numbers in agents.values():
            for metric, value in numbers.items():
                day_total[metric] = day_total.get(metric, 0) + value
                total[metric] = total.get(metric, 0) + value
        rows.append({"day": day, "total": day_total, "agents": agents})
    return _json(
        {"service": service, "since": since.isoformat(), "until": today.isoformat(), "days": rows, "total": total}
    )
