from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cxm_profile.identity.errors import MergeNotActiveError
from cxm_profile.identity.resolution import RULE_ANONYMOUS_INTO_KNOWN, RULE_STRONG_MATCH
from cxm_profile.identity.service import unmerge

if TYPE_CHECKING:
    from conftest import IdentityWorld


async def test_web_app_store_and_hotline_are_one_customer(world: IdentityWorld) -> None:
    web = await world.send("e1", "web", anonymous_id="anon-1")
    app = await world.send(
        "e2", "app", email="taro@example.org", anonymous_id="anon-1", device_id="phone-1"
    )
    store = await world.send("e3", "store", loyalty_id="L-100", email="Taro@Example.org")
    call = await world.send(
        "e4", "call_center", "hotline", phone="090-1234-5678", loyalty_id="L-100"
    )
    assert web.created is not None
    assert web.customer_id == app.customer_id == store.customer_id == call.customer_id
    assert len(world.repository.clusters()) == 1
    assert world.customer_of("phone", "+819012345678") == web.customer_id


async def test_known_customer_absorbs_an_anonymous_visitor_and_says_why(
    world: IdentityWorld,
) -> None:
    shop = await world.send("e1", "store", loyalty_id="L-1", email="taro@example.org")
    web = await world.send("e2", "web", anonymous_id="anon-9")
    login = await world.send("e3", "app", email="taro@example.org", anonymous_id="anon-9")
    (merge,) = login.merges
    assert (merge.winner_id, merge.loser_id) == (shop.customer_id, web.customer_id)
    assert merge.rule == RULE_ANONYMOUS_INTO_KNOWN
    assert merge.joined_by.type == "anonymous_id" and merge.joined_to.type == "email"
    assert merge.event_id == "e3"
    assert world.customer_of("anonymous_id", "anon-9") == shop.customer_id


async def test_two_known_customers_merge_on_a_shared_strong_identifier_older_wins(
    world: IdentityWorld,
) -> None:
    older = await world.send("e1", "web", email="taro@example.org")
    newer = await world.send("e2", "store", loyalty_id="L-1")
    # loyalty_id ranks above email, so the event reaches the newer customer first.
    joined = await world.send("e3", "app", email="taro@example.org", loyalty_id="L-1")
    (merge,) = joined.merges
    assert (merge.winner_id, merge.loser_id) == (older.customer_id, newer.customer_id)
    assert merge.rule == RULE_STRONG_MATCH
    assert joined.customer_id == older.customer_id


async def test_a_shared_store_tablet_does_not_merge_two_logged_in_customers(
    world: IdentityWorld,
) -> None:
    first = await world.send("e1", "store", device_id="tablet-7", user_id="u-1")
    second = await world.send("e2", "store", device_id="tablet-7", user_id="u-2")
    assert first.customer_id != second.customer_id
    assert world.customer_of("user_id", "u-2") == second.customer_id
    assert world.customer_of("device_id", "tablet-7") == first.customer_id
    (quarantine,) = second.quarantines
    assert quarantine.other_customer_id == first.customer_id
    assert "conflicting_user_id" in quarantine.reasons
    assert "weak_link" in quarantine.reasons


async def test_a_tablet_swipe_does_not_pull_a_new_loyalty_card_into_another_customer(
    world: IdentityWorld,
) -> None:
    first = await world.send("e1", "store", device_id="tablet-7", email="taro@example.org")
    swipe = await world.send("e2", "store", device_id="tablet-7", loyalty_id="L-5")
    assert swipe.customer_id != first.customer_id
    assert swipe.quarantines[0].reasons == ("weak_link",)


async def test_two_user_ids_never_merge_automatically(world: IdentityWorld) -> None:
    a = await world.send("e1", "app", user_id="u-1", email="a@example.org")
    b = await world.send("e2", "app", user_id="u-2", email="b@example.org")
    attempt = await world.send("e3", "web", user_id="u-1", email="b@example.org")
    assert attempt.merges == ()
    assert attempt.customer_id == a.customer_id
    (quarantine,) = attempt.quarantines
    assert quarantine.other_customer_id == b.customer_id
    assert quarantine.reasons == ("conflicting_user_id",)
    assert quarantine.joined_by.type == "email"
    assert quarantine.joined_by.masked == "b***@example.org"
    assert len(world.repository.clusters()) == 2


async def test_a_low_trust_channel_attaches_but_never_merges(world: IdentityWorld) -> None:
    a = await world.send("e1", "app", email="a@example.org")
    b = await world.send("e2", "store", loyalty_id="L-2")
    call = await world.send(
        "e3",
        "call_center",
        "hotline",
        email="a@example.org",
        loyalty_id="L-2",
        phone="090-1111-2222",
    )
    assert call.merges == ()
    assert call.quarantines[0].reasons == ("low_trust_channel",)
    assert call.customer_id == b.customer_id  # loyalty_id ranks above email
    assert world.customer_of("phone", "09011112222") == b.customer_id
    assert world.customer_of("email", "a@example.org") == a.customer_id
    assert call.links[0].trust == "low"


async def test_a_customer_holds_at_most_the_configured_number_of_devices(
    world: IdentityWorld,
) -> None:
    for n in range(6):
        last = await world.send(f"e{n}", "app", user_id="u-1", device_id=f"device-{n}")
    assert last.ignored[0].reason == "too_many_device_id"
    assert world.customer_of("device_id", "device-5") is None
    assert world.customer_of("device_id", "device-4") == last.customer_id


async def test_redelivered_event_changes_nothing(world: IdentityWorld) -> None:
    first = await world.send("e1", "app", email="a@example.org", device_id="d-1")
    before = world.repository.clusters()
    again = await world.send("e1", "app", email="a@example.org", device_id="d-2")
    assert again.duplicate and again.customer_id == first.customer_id
    assert world.repository.clusters() == before
    assert world.customer_of("device_id", "d-2") is None


async def test_blocked_values_are_ignored(world: IdentityWorld) -> None:
    a = await world.send("e1", "web", anonymous_id="null", email="a@example.org")
    b = await world.send("e2", "web", anonymous_id="null", email="b@example.org")
    c = await world.send("e3", "web", email="test@example.com", user_id="undefined")
    assert a.customer_id != b.customer_id
    assert c.customer_id is None and c.actions == ()
    assert {i.reason for i in c.ignored} == {"blocked value", "blocked placeholder value"}


async def test_every_link_says_which_event_rule_and_time_made_it(world: IdentityWorld) -> None:
    await world.send("e1", "web", anonymous_id="anon-1")
    attach = await world.send("e2", "app", anonymous_id="anon-1", email="a@example.org")
    (link,) = attach.links
    assert (link.event_id, link.rule) == ("e2", "seen_with_anonymous_id")
    assert link.linked_at > world.repository.links[world.key("anonymous_id", "anon-1")].linked_at


async def test_unmerge_restores_both_customers_with_what_each_had(world: IdentityWorld) -> None:
    a = await world.send("e1", "store", loyalty_id="L-1", device_id="kiosk-a")
    b = await world.send("e2", "web", email="taro@example.org", cookie_id="c-1")
    joined = await world.send("e3", "app", loyalty_id="L-1", email="taro@example.org")
    # Links added after the merge, each through one side's identifier.
    await world.send("e4", "web", email="taro@example.org", phone="090-1234-5678")
    await world.send("e5", "store", loyalty_id="L-1", device_id="kiosk-b")
    assert len(world.repository.clusters()) == 1

    (merge,) = joined.merges
    await unmerge(
        merge_id=merge.merge_id,
        reason="two people, one card",
        repository=world.repository,
        now=world.now(),
    )

    assert world.customer_of("email", "taro@example.org") == b.customer_id
    assert world.customer_of("cookie_id", "c-1") == b.customer_id
    assert world.customer_of("phone", "09012345678") == b.customer_id
    assert world.customer_of("device_id", "kiosk-a") == a.customer_id
    assert world.customer_of("device_id", "kiosk-b") == a.customer_id
    with pytest.raises(MergeNotActiveError):
        await unmerge(
            merge_id=merge.merge_id, reason="again", repository=world.repository, now=world.now()
        )

    # The same evidence does not merge them again; it waits for a person instead.
    again = await world.send("e6", "app", loyalty_id="L-1", email="taro@example.org")
    assert again.merges == ()
    assert again.quarantines[0].reasons == ("previously_unmerged",)


async def test_unmerging_an_earlier_merge_keeps_later_merges_with_their_side(
    world: IdentityWorld,
) -> None:
    a = await world.send("e1", "store", loyalty_id="L-1")
    b = await world.send("e2", "web", email="b@example.org")
    c = await world.send("e3", "web", phone="090-3333-4444")
    first = await world.send("e4", "app", loyalty_id="L-1", email="b@example.org")
    await world.send("e5", "app", email="b@example.org", phone="090-3333-4444")
    (merge,) = first.merges
    await unmerge(
        merge_id=merge.merge_id, reason="wrong", repository=world.repository, now=world.now()
    )
    # c was joined through b's email, so it leaves with b.
    assert world.customer_of("phone", "09033334444") == b.customer_id != a.customer_id
    assert world.customer_of("loyalty_id", "L-1") == a.customer_id
    assert c.customer_id != b.customer_id


async def test_unknown_merge_cannot_be_undone(world: IdentityWorld) -> None:
    with pytest.raises(MergeNotActiveError):
        await unmerge(merge_id="nope", reason="x", repository=world.repository, now=world.now())


async def test_a_contested_device_stays_with_whoever_was_first(world: IdentityWorld) -> None:
    """Documented order dependence: see the guarantees in resolution.py."""
    await world.send("e1", "store", device_id="tablet-1", user_id="u-1")
    await world.send("e2", "store", device_id="tablet-1", user_id="u-2")
    assert world.customer_of("device_id", "tablet-1") == world.customer_of("user_id", "u-1")
