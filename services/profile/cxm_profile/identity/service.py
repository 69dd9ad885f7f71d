"""The identity service layer: read facts, decide, apply. The only place with I/O calls."""

from collections.abc import Mapping
from datetime import datetime

from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.identity.models import Resolution, UnmergeCustomers
from cxm_profile.identity.repository import IdentityRepository, MergeHistory
from cxm_profile.identity.resolution import IdentityEvent, decide
from cxm_profile.identity.rules import ResolutionRules
from cxm_profile.identity.unmerge import plan_unmerge


async def resolve_event(
    *,
    event_id: str,
    channel: str,
    touchpoint: str | None,
    identifiers: Mapping[str, object],
    rules: ResolutionRules,
    secret: bytes,
    repository: IdentityRepository,
    now: datetime,
) -> Resolution:
    parsed = parse_identifiers(identifiers, rules=rules, secret=secret)
    event = IdentityEvent(event_id, channel, touchpoint, parsed)
    return await resolve_parsed(event=event, rules=rules, repository=repository, now=now)


async def resolve_parsed(
    *, event: IdentityEvent, rules: ResolutionRules, repository: IdentityRepository, now: datetime
) -> Resolution:
    """Resolve an event whose identifiers are already parsed (and, e.g., filtered)."""
    parsed = event.identifiers
    event_id = event.event_id
    facts = await repository.load_facts(
        event_id=event_id, keys=[identifier.key for identifier in parsed.accepted]
    )
    resolution = decide(event, facts=facts, rules=rules, now=now)
    if not resolution.duplicate and resolution.customer_id is not None:
        await repository.apply(resolution)
    return resolution


async def unmerge(
    *, merge_id: str, reason: str, repository: MergeHistory, now: datetime
) -> UnmergeCustomers:
    record = await repository.get_merge(merge_id)
    planned = plan_unmerge(merge_id=merge_id, record=record, now=now, reason=reason)
    await repository.apply_unmerge(planned)
    return planned
