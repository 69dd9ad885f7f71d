"""Aggregation groups: one group per (route, values of the route's group_by labels).

Alerts in the same group are notified together and share group_wait/group_interval timing,
so, for example, ``group_by: [kind, customer_id]`` collapses repeated churn-risk signals for one
customer into one notification stream per team.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from cxm_alerting.routing.tree import Route


def group_labels(*, route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that define the alert's group on ``route``.

    Labels the alert lacks (or has empty) are left out, as in Alertmanager, so an absent
    label and an empty one fall into the same group.
    """
    if route.group_by_all:
        names = sorted(labels)
    else:
        names = list(route.group_by)
    return {name: labels[name] for name in names if labels.get(name)}


def group_key(*, route: Route, labels: Mapping[str, str]) -> str:
    """Readable, deterministic key such as ``{}/{kind="churn_risk_high"}:{customer_id="c1"}``.

    It contains label values (possibly a customer id), so it belongs in the alert store, not
    in logs or metric labels: use :func:`group_id` there.
    """
    grouped = group_labels(route=route, labels=labels)
    rendered = ",".join(f"{name}={_quote(value)}" for name, value in sorted(grouped.items()))
    return f"{route.key}:{{{rendered}}}"


def group_id(*, route: Route, labels: Mapping[str, str]) -> str:
    """A short opaque fingerprint of :func:`group_key`, safe to log."""
    key = group_key(route=route, labels=labels)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
