"""Deciding which customer an event belongs to: pure, no I/O, deterministic.

The event's identifiers are grouped by the live customer that already holds them (plus one
group of identifiers never seen before). Groups are taken in priority order of their best
identifier; the first (the *primary*) is the event's customer, and each further group joins
it only if every rule allows:

- limits: the joined customer holds at most `limit` identifiers of each type (a unique type
  such as `user_id` at most one, so two user ids never merge automatically);
- strength: two customers that both hold a strong identifier are joined only when the event
  reaches each through a strong identifier of its own. A weak identifier (a shared device or
  cookie) can carry an anonymous profile into a known one, never join two known people;
- trust: a low-trust event (agent-typed, shared tablet) may attach new identifiers but never
  merges two existing customers;
- a pair once unmerged by a person is not merged again automatically.

A refused existing customer becomes a quarantined merge (with every reason); a refused new
identifier is left unlinked and reported. The winner of a merge is the older customer (then
the smaller id), so the choice never depends on which event came first.

Guarantees (proved by the property tests in tests/unit/identity/):

- redelivering an event (same event_id) changes nothing;
- an identifier is linked once, so it never belongs to two live customers, and merges only
  add: no identifier is lost by a merge;
- order independence, for high-trust events within the limits and unique rules: the
  partition of strong identifiers is the connected components of "seen together in one
  event", whatever the order; a weak identifier whose evidence points at one person only
  lands with that person whatever the order.

What is NOT order-independent, by design: a weak identifier seen with two known people (the
shared tablet), a conflict with a unique type or limit, and low-trust evidence. Each of these
goes to whoever was first, and the other side is quarantined. Making them order-independent
would need moving identifiers between customers after the fact (a contested device leaves
the customer it joined first), which would rewrite history other services already acted on;
a shared tablet shows it cannot be both monotone and order-independent: after {tablet, u1}
the tablet is u1's, after {tablet, u2} it is u2's, and u1 and u2 must never merge.
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from cxm_profile.identity.identifiers import Identifier, IgnoredIdentifier, ParsedIdentifiers
from cxm_profile.identity.models import (
    Action,
    CreateCustomer,
    CustomerFacts,
    GraphFacts,
    Link,
    LinkIdentifier,
    MergeCustomers,
    QuarantineMerge,
    Resolution,
)
from cxm_profile.identity.rules import ResolutionRules, Trust

# Ids derived from the event id make a retried decision produce the same ids.
_ID_NAMESPACE = uuid.UUID("6f1d7c1e-2b7a-4f51-9a43-0c7e3b1d5a20")

RULE_NEW_CUSTOMER = "new_customer"
RULE_STRONG_MATCH = "strong_identifier_match"
RULE_ANONYMOUS_INTO_KNOWN = "anonymous_profile_joined"


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    event_id: str
    channel: str
    touchpoint: str | None
    identifiers: ParsedIdentifiers


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


@dataclass(slots=True)
class _Joined:
    """The customer being assembled for the event: existing customers plus new identifiers."""

    roots: list[CustomerFacts]
    new: list[Identifier]
    held: dict[str, set[str]]  # identifier type -> keys the joined customer would hold
    known: bool = False  # holds a strong identifier
    known_reached_weakly: bool = False  # a known member was reached through weak ids only

    @property
    def empty(self) -> bool:
        return not self.roots and not self.new


def decide(
    event: IdentityEvent, *, facts: GraphFacts, rules: ResolutionRules, now: datetime
) -> Resolution:
    if facts.previous_customer_id is not None:
        return Resolution(event.event_id, facts.previous_customer_id, duplicate=True)
    ignored = list(event.identifiers.ignored)
    identifiers = sorted(event.identifiers.accepted, key=lambda i: rules.rank(i.type))
    if not identifiers:
        return Resolution(event.event_id, None, ignored=tuple(ignored))
    trust = rules.trust_of(channel=event.channel, touchpoint=event.touchpoint)

    # dicts keep insertion order, and identifiers come in priority order, so groups do too.
    groups: dict[str | None, list[Identifier]] = {}
    for identifier in identifiers:
        link = facts.links.get(identifier.key)
        root_id = facts.roots[link.customer_id] if link else None
        groups.setdefault(root_id, []).append(identifier)

    joined = _Joined(roots=[], new=[], held=defaultdict(set))
    refused: list[tuple[CustomerFacts, Identifier, tuple[str, ...]]] = []
    for root_id, members in groups.items():
        if root_id is None:
            for identifier in members:
                if reason := _new_identifier_refusal(identifier, joined=joined, rules=rules):
                    ignored.append(IgnoredIdentifier(identifier.type, identifier.masked, reason))
                else:
                    joined.new.append(identifier)
                    joined.held[identifier.type].add(identifier.key)
                    joined.known |= rules.is_strong(identifier.type)
            continue
        customer = facts.customers[root_id]
        reached_strongly = any(rules.is_strong(m.type) for m in members)
        reasons = (
            ()
            if joined.empty
            else _merge_refusals(
                customer,
                reached_strongly=reached_strongly,
                joined=joined,
                facts=facts,
                rules=rules,
                trust=trust,
            )
        )
        if reasons:
            refused.append((customer, members[0], reasons))
            continue
        customer_known = _is_known(customer, rules)
        joined.roots.append(customer)
        for identifier in customer.identifiers:
            joined.held[identifier.type].add(identifier.key)
        joined.known |= customer_known
        joined.known_reached_weakly |= customer_known and not reached_strongly

    return _resolution(
        event,
        groups=groups,
        joined=joined,
        refused=refused,
        ignored=ignored,
        facts=facts,
        trust=trust,
        rules=rules,
        now=now,
    )


def _is_known(customer: CustomerFacts, rules: ResolutionRules) -> bool:
    return any(rules.is_strong(i.type) for i in customer.identifiers)


def _new_identifier_refusal(
    identifier: Identifier, *, joined: _Joined, rules: ResolutionRules
) -> str | None:
    limit = rules.limit(identifier.type)
    if limit is not None and len(joined.held[identifier.type] | {identifier.key}) > limit:
        return _limit_reason(identifier.type, rules)
    if rules.is_strong(identifier.type) and joined.known_reached_weakly:
        return "weak_link"
    return None


def _merge_refusals(
    customer: CustomerFacts,
    *,
    reached_strongly: bool,
    joined: _Joined,
    facts: GraphFacts,
    rules: ResolutionRules,
    trust: Trust,
) -> tuple[str, ...]:
    reasons: list[str] = []
    if any(
        frozenset({customer.customer_id, r.customer_id}) in facts.separated for r in joined.roots
    ):
        reasons.append("previously_unmerged")
    union: dict[str, set[str]] = defaultdict(set)
    for identifier in customer.identifiers:
        union[identifier.type].add(identifier.key)
    for identifier_type in sorted(union):
        limit = rules.limit(identifier_type)
        held = joined.held.get(identifier_type, set())
        if limit is not None and len(union[identifier_type] | held) > limit:
            reasons.append(_limit_reason(identifier_type, rules))
    if trust is Trust.LOW and joined.roots:
        reasons.append("low_trust_channel")
    both_known = joined.known and _is_known(customer, rules)
    if both_known and (not reached_strongly or joined.known_reached_weakly):
        reasons.append("weak_link")
    return tuple(reasons)


def _limit_reason(identifier_type: str, rules: ResolutionRules) -> str:
    if rules.types[identifier_type].unique:
        return f"conflicting_{identifier_type}"
    return f"too_many_{identifier_type}"


def _resolution(
    event: IdentityEvent,
    *,
    groups: dict[str | None, list[Identifier]],
    joined: _Joined,
    refused: list[tuple[CustomerFacts, Identifier, tuple[str, ...]]],
    ignored: list[IgnoredIdentifier],
    facts: GraphFacts,
    trust: Trust,
    rules: ResolutionRules,
    now: datetime,
) -> Resolution:
    actions: list[Action] = []
    if joined.roots:
        ordered = sorted(joined.roots, key=lambda c: (c.created_at, c.customer_id))
        winner, losers = ordered[0], ordered[1:]
        customer_id = winner.customer_id
        joined_to = groups[winner.customer_id][0]
        parent_id = facts.links[joined_to.key].customer_id
        for loser in losers:
            both_known = _is_known(loser, rules) and _is_known(winner, rules)
            actions.append(
                MergeCustomers(
                    merge_id=derived_id(event.event_id, "merge", loser.customer_id),
                    loser_id=loser.customer_id,
                    winner_id=winner.customer_id,
                    parent_id=parent_id,
                    event_id=event.event_id,
                    rule=RULE_STRONG_MATCH if both_known else RULE_ANONYMOUS_INTO_KNOWN,
                    joined_by=groups[loser.customer_id][0],
                    joined_to=joined_to,
                    merged_at=now,
                )
            )
        # New identifiers go home with the side the event's best known identifier came from,
        # so that undoing one of these merges sends them with the evidence that brought them.
        joined_ids = {c.customer_id for c in joined.roots}
        anchor = next(members[0] for root_id, members in groups.items() if root_id in joined_ids)
        home = facts.links[anchor.key].customer_id
        rule = f"seen_with_{anchor.type}"
    else:
        customer_id = home = derived_id(event.event_id, "customer")
        actions.append(CreateCustomer(customer_id, now, event.event_id))
        rule = RULE_NEW_CUSTOMER
    actions += [
        LinkIdentifier(Link(identifier, home, event.event_id, rule, trust, now))
        for identifier in joined.new
    ]
    actions += [
        QuarantineMerge(
            quarantine_id=derived_id(event.event_id, "quarantine", other.customer_id),
            customer_id=customer_id,
            other_customer_id=other.customer_id,
            event_id=event.event_id,
            reasons=reasons,
            joined_by=joined_by,
            quarantined_at=now,
        )
        for other, joined_by, reasons in refused
    ]
    return Resolution(event.event_id, customer_id, tuple(actions), tuple(ignored))
