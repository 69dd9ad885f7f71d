"""Build the routing tree from YAML: validate, resolve inheritance, check cross-references.

Children inherit ``receiver``, ``group_by`` and the three timings from their parent when they
leave them unset; ``matchers`` and ``continue`` are never inherited (Alertmanager semantics).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import yaml
from pydantic import ValidationError

from cxm_alerting.routing.errors import ConfigIssue, RoutingConfigError
from cxm_alerting.routing.matchers import Matcher
from cxm_alerting.routing.schemas import (
    GROUP_BY_ALL,
    AlertingConfig,
    InhibitRuleConfig,
    ReceiverConfig,
    RouteConfig,
)

# Alertmanager's defaults for the root route.
DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)

Receiver = ReceiverConfig
InhibitRule = InhibitRuleConfig


@dataclass(frozen=True, slots=True)
class Route:
    """A route with every inherited field resolved."""

    path: str  # where it sits in the YAML, e.g. "route.routes[1]"; used in explanations
    key: str  # matcher path from the root, e.g. '{}/{kind="churn_risk_high"}'; used in group keys
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]  # sorted label names; empty means one group for the route
    group_by_all: bool  # group_by: ['...']
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    routes: tuple[Route, ...]
    # group_wait written in the YAML on this route or an ancestor (not only the default):
    # only then are notifications held back and grouped.
    group_wait_explicit: bool = False

    @property
    def groups_notifications(self) -> bool:
        return self.group_wait_explicit and self.group_wait > timedelta(0)


@dataclass(frozen=True, slots=True)
class RoutingTree:
    root: Route
    receivers: Mapping[str, Receiver]
    inhibit_rules: tuple[InhibitRule, ...]

    def walk(self) -> list[Route]:
        """Every route, depth-first in YAML order."""
        out: list[Route] = []
        stack = [self.root]
        while stack:
            route = stack.pop()
            out.append(route)
            stack.extend(reversed(route.routes))
        return out


def load_tree(text: str) -> RoutingTree:
    """Parse and validate the YAML configuration; raises :class:`RoutingConfigError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingConfigError([ConfigIssue(path="<yaml>", message=str(exc))]) from exc
    if not isinstance(data, Mapping):
        raise RoutingConfigError(
            [ConfigIssue(path="<root>", message="expected a mapping with 'route' and 'receivers'")]
        )
    return build_tree(data)


def build_tree(data: Mapping[str, Any]) -> RoutingTree:
    """Validate already-parsed configuration (e.g. from an API body) into a tree."""
    try:
        config = AlertingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingConfigError(_issues_from_pydantic(exc)) from exc
    issues: list[ConfigIssue] = []
    receivers = _index_receivers(config.receivers, issues)
    _check_escalations(config.receivers, receivers, issues)
    _check_root(config.route, issues)
    root = _resolve(
        config.route,
        parent=None,
        path="route",
        key="{}",
        receivers=receivers,
        issues=issues,
    )
    if issues:
        raise RoutingConfigError(issues)
    return RoutingTree(root=root, receivers=receivers, inhibit_rules=tuple(config.inhibit_rules))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "<root>"


def _issues_from_pydantic(exc: ValidationError) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        issues.append(ConfigIssue(path=_format_loc(error["loc"]), message=message))
    return issues


def _index_receivers(
    configs: list[ReceiverConfig], issues: list[ConfigIssue]
) -> dict[str, ReceiverConfig]:
    by_name: dict[str, ReceiverConfig] = {}
    first_index: dict[str, int] = {}
    for index, receiver in enumerate(configs):
        if receiver.name in by_name:
            issues.append(
                ConfigIssue(
                    path=f"receivers[{index}].name",
                    message=f"duplicate receiver name {receiver.name!r} "
                    f"(first defined at receivers[{first_index[receiver.name]}])",
                )
            )
            continue
        by_name[receiver.name] = receiver
        first_index[receiver.name] = index
    return by_name


def _check_escalations(
    configs: list[ReceiverConfig],
    receivers: Mapping[str, ReceiverConfig],
    issues: list[ConfigIssue],
) -> None:
    for index, receiver in enumerate(configs):
        target = receiver.escalate_to
        if target is None:
            continue
        path = f"receivers[{index}].escalate_to"
        if target not in receivers:
            issues.append(ConfigIssue(path=path, message=_unknown_receiver(target, receivers)))
            continue
        if receiver.ack_sla is None:
            issues.append(
                ConfigIssue(
                    path=f"receivers[{index}].ack_sla",
                    message="required when escalate_to is set (escalation is triggered by it)",
                )
            )
        chain = [receiver.name]
        current: str | None = target
        while current is not None and current in receivers:
            if current in chain:
                issues.append(
                    ConfigIssue(
                        path=path,
                        message="escalation cycle " + " -> ".join([*chain, current]),
                    )
                )
                break
            chain.append(current)
            current = receivers[current].escalate_to


def _check_root(config: RouteConfig, issues: list[ConfigIssue]) -> None:
    if config.receiver is None:
        issues.append(
            ConfigIssue(path="route.receiver", message="the root route must name a receiver")
        )
    if config.matchers:
        issues.append(
            ConfigIssue(
                path="route.matchers",
                message="the root route receives every alert and cannot have matchers",
            )
        )
    if config.continue_:
        issues.append(
            ConfigIssue(path="route.continue", message="the root route cannot have continue")
        )


def _unknown_receiver(name: str, receivers: Mapping[str, ReceiverConfig]) -> str:
    return f"unknown receiver {name!r} (defined: {', '.join(sorted(receivers)) or 'none'})"


def _resolve(
    config: RouteConfig,
    *,
    parent: Route | None,
    path: str,
    key: str,
    receivers: Mapping[str, ReceiverConfig],
    issues: list[ConfigIssue],
) -> Route:
    receiver = config.receiver or (parent.receiver if parent else "")
    if config.receiver is not None and config.receiver not in receivers:
        issues.append(
            ConfigIssue(path=f"{path}.receiver", message=_unknown_receiver(receiver, receivers))
        )
    if config.group_by is not None:
        group_by_all = config.group_by == [GROUP_BY_ALL]
        group_by = () if group_by_all else tuple(sorted(config.group_by))
    elif parent is not None:
        group_by_all, group_by = parent.group_by_all, parent.group_by
    else:
        group_by_all, group_by = False, ()

    def inherit(value: timedelta | None, field: str, default: timedelta) -> timedelta:
        if value is None:
            return getattr(parent, field) if parent else default
        if value <= timedelta(0) and field != "group_wait":
            issues.append(ConfigIssue(path=f"{path}.{field}", message="must be greater than 0"))
        return value

    route = Route(
        path=path,
        key=key,
        receiver=receiver,
        matchers=tuple(config.matchers),
        continue_=config.continue_,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=inherit(config.group_wait, "group_wait", DEFAULT_GROUP_WAIT),
        group_interval=inherit(config.group_interval, "group_interval", DEFAULT_GROUP_INTERVAL),
        repeat_interval=inherit(config.repeat_interval, "repeat_interval", DEFAULT_REPEAT_INTERVAL),
        routes=(),
        group_wait_explicit=config.group_wait is not None
        or (parent.group_wait_explicit if parent else False),
    )
    children: list[Route] = []
    seen_keys: set[str] = set()
    for index, child in enumerate(config.routes):
        child_key = f"{key}/{{{','.join(str(m) for m in child.matchers)}}}"
        # Siblings with identical matchers would share group keys; the index keeps them apart
        # while leaving the usual key stable when siblings are reordered.
        if child_key in seen_keys:
            child_key = f"{child_key}#{index}"
        seen_keys.add(child_key)
        children.append(
            _resolve(
                child,
                parent=route,
                path=f"{path}.routes[{index}]",
                key=child_key,
                receivers=receivers,
                issues=issues,
            )
        )
    return replace(route, routes=tuple(children))
