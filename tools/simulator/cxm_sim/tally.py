"""What the simulator sent, counted as it goes: events by type and channel, events per
customer (to know when the platform has caught up), survey answers by channel (NPS)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from cxm_sim.journeys import Planned


def nps(scores: list[int]) -> float | None:
    """% promoters (9-10) minus % detractors (0-6); None without answers."""
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return round(100.0 * (promoters - detractors) / len(scores), 2)


@dataclass(slots=True)
class Tally:
    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    by_customer: Counter[int] = field(default_factory=Counter)
    personas: dict[int, str] = field(default_factory=dict)
    # Every survey response per channel (the platform's rolling NPS window counts responses,
    # with or without an NPS answer) and the NPS answers among them.
    responses_by_channel: Counter[str] = field(default_factory=Counter)
    nps_by_channel: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    comments_by_language: Counter[str] = field(default_factory=Counter)
    event_customer: dict[str, int] = field(default_factory=dict)

    def add(self, planned: Planned) -> None:
        event = planned.event
        self.events += 1
        self.by_type[event["type"]] += 1
        self.by_channel[event["channel"]] += 1
        self.by_customer[planned.customer] += 1
        self.personas[planned.customer] = planned.persona
        self.event_customer[event["event_id"]] = planned.customer
        props = event["properties"]
        if event["type"] == "survey_response":
            self.responses_by_channel[event["channel"]] += 1
            if "nps" in props:
                self.nps_by_channel[event["channel"]].append(props["nps"])
        if "comment" in props:
            self.comments_by_language[event["context"]["locale"][:2]] += 1

    def forget(self, event_ids: set[str]) -> None:
        """Events the ingest rejected never reached a customer."""
        for event_id in event_ids:
            customer = self.event_customer.get(event_id)
            if customer is not None:
                self.by_customer[customer] -= 1

    def nps_table(self) -> dict[str, dict[str, Any]]:
        return {
            channel: {
                "responses": self.responses_by_channel[channel],
                "nps_answers": len(scores),
                "nps": nps(scores),
            }
            for channel, scores in sorted(self.nps_by_channel.items())
        }

    def persona_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.personas.values()).items()))
