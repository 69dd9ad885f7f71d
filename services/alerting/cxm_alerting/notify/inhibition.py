"""Inhibition: a firing source alert mutes matching target alerts (Alertmanager inhibit_rules).

Example: while a critical churn-risk alert is open for a customer, a warning
negative-feedback alert for the same customer (``equal: [customer_id]``) adds nothing for the
team and is muted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.muting import Mute, MuteKind
from cxm_alerting.routing.matchers import matches_all
from cxm_alerting.routing.tree import InhibitRule


@dataclass(frozen=True, slots=True)
class Inhibitor:
    """A :class:`~cxm_alerting.notify.muting.Muter` over a snapshot of the open alerts."""

    rules: tuple[InhibitRule, ...]
    alerts: tuple[Alert, ...]

    @classmethod
    def build(cls, *, rules: Iterable[InhibitRule], alerts: Iterable[Alert]) -> Inhibitor:
        return cls(rules=tuple(rules), alerts=tuple(alerts))

    def mutes(self, *, labels: Mapping[str, str], now: datetime) -> Mute | None:
        for index, rule in enumerate(self.rules):
            if not matches_all(rule.target_matchers, labels):
                continue
            # An alert matching both sides must not be muted by alerts that also match both
            # sides, itself included; otherwise such alerts would silence each other.
            two_sided = matches_all(rule.source_matchers, labels)
            for source in self.alerts:
                if not source.is_firing(now=now):
                    continue
                if not matches_all(rule.source_matchers, source.labels):
                    continue
                if two_sided and matches_all(rule.target_matchers, source.labels):
                    continue
                if not _equal_on(rule.equal, source.labels, labels):
                    continue
                return Mute(
                    kind=MuteKind.INHIBITION,
                    ref=f"inhibit_rules[{index}]",
                    reason=f"inhibited by open alert {source.alert_id} (inhibit_rules[{index}])",
                )
        return None


def _equal_on(names: Iterable[str], source: Mapping[str, str], target: Mapping[str, str]) -> bool:
    # A label absent on both sides counts as equal, as in Alertmanager.
    return all(source.get(name, "") == target.get(name, "") for name in names)
