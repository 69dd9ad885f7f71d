"""Topic names: the one place that knows them (logical names from DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass

TOUCHPOINTS = "cx.touchpoints"
TOUCHPOINTS_RESOLVED = "cx.touchpoints.resolved"
IDENTITY_MERGES = "cx.identity.merges"
SCORES = "cx.scores"
SIGNALS = "cx.signals"
ERASURES = "cx.erasures"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None

    def config(self) -> dict[str, str]:
        cfg: dict[str, str] = {}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


@dataclass(frozen=True, slots=True)
class Topics:
    """Physical topic names for one deployment (``prefix`` isolates tests and tenants)."""

    prefix: str = ""

    def name(self, logical: str) -> str:
        return f"{self.prefix}{logical}"

    @property
    def touchpoints(self) -> str:
        return self.name(TOUCHPOINTS)

    @property
    def touchpoints_resolved(self) -> str:
        return self.name(TOUCHPOINTS_RESOLVED)

    @property
    def identity_merges(self) -> str:
        return self.name(IDENTITY_MERGES)

    @property
    def scores(self) -> str:
        return self.name(SCORES)

    @property
    def signals(self) -> str:
        return self.name(SIGNALS)

    @property
    def erasures(self) -> str:
        return self.name(ERASURES)

    @staticmethod
    def dlq(topic: str) -> str:
        return f"{topic}{DLQ_SUFFIX}"

    def all_specs(self, *, partitions: int) -> list[TopicSpec]:
        """Every platform topic with its dead-letter topic, as `make up` creates them."""
        week_ms = 7 * 24 * 3600 * 1000
        main = [
            TopicSpec(self.touchpoints, partitions),
            TopicSpec(self.touchpoints_resolved, partitions),
            TopicSpec(self.identity_merges, partitions),
            TopicSpec(self.scores, partitions, compacted=True),
            TopicSpec(self.signals, partitions),
            TopicSpec(self.erasures, partitions),
        ]
        dlqs = [TopicSpec(self.dlq(t.name), 1, retention_ms=4 * week_ms) for t in main]
        return main + dlqs
