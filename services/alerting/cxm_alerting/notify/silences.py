"""Silences: operator-created mutes with matchers and a time range.

A silence mutes only between ``starts_at`` (inclusive) and ``ends_at`` (exclusive); a pending
or expired silence mutes nothing, so expiry needs no clean-up job to take effect.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from cxm_alerting.notify.muting import Mute, MuteKind
from cxm_alerting.routing.matchers import matches_all
from cxm_alerting.routing.schemas import MatcherItem


class SilenceState(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: str = Field(min_length=1)
    matchers: list[MatcherItem] = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str = Field(min_length=1)
    comment: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        # As in Alertmanager: a silence whose matchers all accept the empty label set would mute
        # every alert, which is never what an operator means.
        if matches_all(self.matchers, {}):
            raise ValueError("at least one matcher must require a non-empty label value")
        return self

    def state(self, *, now: datetime) -> SilenceState:
        if now < self.starts_at:
            return SilenceState.PENDING
        if now >= self.ends_at:
            return SilenceState.EXPIRED
        return SilenceState.ACTIVE


@dataclass(frozen=True, slots=True)
class Silencer:
    """A :class:`~cxm_alerting.notify.muting.Muter` over the known silences."""

    silences: tuple[Silence, ...]

    @classmethod
    def build(cls, *, silences: Iterable[Silence]) -> Silencer:
        return cls(silences=tuple(silences))

    def mutes(self, *, labels: Mapping[str, str], now: datetime) -> Mute | None:
        for silence in self.silences:
            if silence.state(now=now) is not SilenceState.ACTIVE:
                continue
            if matches_all(silence.matchers, labels):
                return Mute(
                    kind=MuteKind.SILENCE,
                    ref=silence.id,
                    reason=f"silenced by {silence.id} (created by {silence.created_by})",
                )
        return None
