"""Which routes an alert reaches, and why (Alertmanager semantics).

The tree is walked depth-first. A route that matches hands the alert to its children in
order; the first matching child wins unless that child has ``continue: true``, in which case
later siblings are tried too. When no child matches, the route itself is the match, so an
alert always lands somewhere below the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxm_alerting.routing.durations import format_duration
from cxm_alerting.routing.tree import Route, RoutingTree


@dataclass(frozen=True, slots=True)
class MatcherVerdict:
    matcher: str
    label: str
    value: str | None  # the alert's value, None when it does not carry the label
    accepted: bool


@dataclass(frozen=True, slots=True)
class RouteVisit:
    """One route evaluated for the alert, in evaluation order."""

    path: str
    receiver: str
    matched: bool
    verdicts: tuple[MatcherVerdict, ...]
    note: str


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    trail: tuple[RouteVisit, ...]  # the matched routes from the root down to this one

    @property
    def receiver(self) -> str:
        return self.route.receiver


@dataclass(frozen=True, slots=True)
class RoutingExplanation:
    matches: tuple[RouteMatch, ...]
    visits: tuple[RouteVisit, ...]

    @property
    def receivers(self) -> list[str]:
        """Receivers reached, in order, without repeats."""
        return list(dict.fromkeys(match.receiver for match in self.matches))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the route-testing endpoint."""
        return {
            "receivers": self.receivers,
            "matches": [
                {
                    "route": m.route.path,
                    "receiver": m.receiver,
                    "group_by": ["..."] if m.route.group_by_all else list(m.route.group_by),
                    "group_wait": format_duration(m.route.group_wait),
                    "group_interval": format_duration(m.route.group_interval),
                    "repeat_interval": format_duration(m.route.repeat_interval),
                    "via": [visit.path for visit in m.trail],
                }
                for m in self.matches
            ],
            "visits": [
                {
                    "route": v.path,
                    "receiver": v.receiver,
                    "matched": v.matched,
                    "note": v.note,
                    "matchers": [
                        {"matcher": x.matcher, "value": x.value, "accepted": x.accepted}
                        for x in v.verdicts
                    ],
                }
                for v in self.visits
            ],
        }


def match(tree: RoutingTree, labels: Mapping[str, str]) -> list[RouteMatch]:
    """The routes (and so receivers) an alert with ``labels`` is delivered through."""
    return list(explain(tree, labels).matches)


def explain(tree: RoutingTree, labels: Mapping[str, str]) -> RoutingExplanation:
    """Route ``labels`` and record every route visited and every matcher's verdict."""
    visits: list[RouteVisit] = []
    matches = _walk(tree.root, labels, trail=(), visits=visits)
    return RoutingExplanation(matches=tuple(matches), visits=tuple(visits))


def _verdicts(route: Route, labels: Mapping[str, str]) -> tuple[MatcherVerdict, ...]:
    return tuple(
        MatcherVerdict(
            matcher=str(m),
            label=m.name,
            value=labels.get(m.name),
            accepted=m.matches(labels),
        )
        for m in route.matchers
    )


def _walk(
    route: Route,
    labels: Mapping[str, str],
    *,
    trail: tuple[RouteVisit, ...],
    visits: list[RouteVisit],
) -> list[RouteMatch]:
    verdicts = _verdicts(route, labels)
    rejected = [v.matcher for v in verdicts if not v.accepted]
    position = len(visits)
    if rejected:
        note = "rejected by " + ", ".join(rejected)
        visits.append(RouteVisit(route.path, route.receiver, False, verdicts, note))
        return []
    # Placeholder, rewritten once we know what the children did.
    visit = RouteVisit(route.path, route.receiver, True, verdicts, "")
    visits.append(visit)
    here = (*trail, visit)
    found: list[RouteMatch] = []
    note = "matched; no child routes" if not route.routes else ""
    for index, child in enumerate(route.routes):
        child_matches = _walk(child, labels, trail=here, visits=visits)
        found.extend(child_matches)
        if child_matches and not child.continue_:
            skipped = len(route.routes) - index - 1
            note = f"matched; stopped at {child.path} (no continue)"
            if skipped:
                note += f", {skipped} later sibling(s) not evaluated"
            break
    else:
        if found:
            note = "matched; children with continue: true matched"
    if route.routes and not found:
        note = f"matched; no child matched, delivering to {route.receiver!r} here"
    elif not route.routes:
        note = f"matched; delivering to {route.receiver!r}"
    final = RouteVisit(route.path, route.receiver, True, verdicts, note)
    visits[position] = final
    if not found:
        return [RouteMatch(route=route, trail=(*trail, final))]
    # Children captured the placeholder in their trails; swap in the final visit.
    return [
        RouteMatch(route=m.route, trail=tuple(final if v is visit else v for v in m.trail))
        for m in found
    ]
