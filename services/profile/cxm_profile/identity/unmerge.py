"""Undoing a merge: pure; the repository clears one pointer and records the separation."""

from datetime import datetime

from cxm_profile.identity.errors import MergeNotActiveError
from cxm_profile.identity.models import MergeRecord, UnmergeCustomers


def plan_unmerge(
    *, merge_id: str, record: MergeRecord | None, now: datetime, reason: str
) -> UnmergeCustomers:
    """The loser becomes live again with its own links (and everything merged into it).

    Only the merge's own edge is cut: customers merged later into either side stay with the
    side whose identifier joined them (see `MergeCustomers.parent_id`).
    """
    if record is None:
        raise MergeNotActiveError(f"merge {merge_id} is unknown")
    if record.unmerged_at is not None:
        raise MergeNotActiveError(f"merge {merge_id} was already undone")
    return UnmergeCustomers(
        merge_id=merge_id,
        loser_id=record.merge.loser_id,
        parent_id=record.merge.parent_id,
        unmerged_at=now,
        reason=reason,
    )
