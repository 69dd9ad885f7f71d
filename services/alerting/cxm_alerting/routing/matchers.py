"""Label matchers in Alertmanager syntax: ``kind="churn_risk_high"``, ``severity=~"a|b"``,
``channel!="web"``, ``segment!~"test.*"``.

Regexes are anchored at both ends, as in Alertmanager, so ``severity=~"crit"`` does not match
``critical``. A label the alert does not carry is treated as the empty string, which is what
makes ``channel!="web"`` accept an alert without a channel.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cxm_alerting.routing.errors import MatcherSyntaxError

# The labels an alert carries. Matchers and group_by may only name these, so that a typo in
# the YAML ("sevrity") is a load error instead of a route that silently never matches.
# customer_id is a grouping label only: it must never become a metric label.
ALERT_LABELS: frozenset[str] = frozenset(
    {
        "kind",
        "severity",
        "channel",
        "touchpoint",
        "segment",
        "value_tier",
        "region",
        "team",
        "customer_id",
    }
)


class MatchOp(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_SYNTAX = re.compile(
    r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^\s"]*)\s*""",
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


def _unquote(raw: str) -> str:
    if not raw.startswith('"'):
        return raw
    body = raw[1:-1]
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            # Unknown escapes are kept verbatim so regex escapes such as \d survive quoting.
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition. Build with :func:`parse_matcher`."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        match self.op:
            case MatchOp.EQUAL:
                return actual == self.value
            case MatchOp.NOT_EQUAL:
                return actual != self.value
            case MatchOp.REGEX:
                assert self._regex is not None
                return self._regex.fullmatch(actual) is not None
            case MatchOp.NOT_REGEX:
                assert self._regex is not None
                return self._regex.fullmatch(actual) is None

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


def parse_matcher(text: str, *, known_labels: Iterable[str] | None = ALERT_LABELS) -> Matcher:
    """Parse one matcher; raises :class:`MatcherSyntaxError` with a message fit for an operator.

    ``known_labels=None`` accepts any label name.
    """
    if not isinstance(text, str):
        raise MatcherSyntaxError(
            f"matcher must be a string like 'kind=\"x\"', got {type(text).__name__}"
        )
    parsed = _SYNTAX.fullmatch(text)
    if parsed is None:
        raise MatcherSyntaxError(
            # The matcher is not echoed (here or below): its value may be personal data.
            'invalid matcher: expected name="value", name!="value", name=~"regex" or name!~"regex"'
        )
    name = parsed.group("name")
    if known_labels is not None and name not in known_labels:
        raise MatcherSyntaxError(
            f"unknown label {name!r}; alert labels are: " + ", ".join(sorted(known_labels))
        )
    op = MatchOp(parsed.group("op"))
    value = _unquote(parsed.group("value"))
    regex: re.Pattern[str] | None = None
    if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise MatcherSyntaxError(f"invalid regex {value!r}: {exc}") from exc
    return Matcher(name=name, op=op, value=value, _regex=regex)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)
