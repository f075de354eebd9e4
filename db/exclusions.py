"""The grouping_exclusions table: the images the latest grouping run left out, and why."""
from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from db.chunks import chunks
from db.models import GroupingExclusion, Image, utcnow


def stored(connection: Connection) -> dict[int, str | None]:
    """Return {image id: why} of the images the latest run excluded."""
    return dict(connection.execute(select(GroupingExclusion.image_id,
                                          GroupingExclusion.reason)).all())


def exclusion(connection: Connection, image_id: int):
    """Return (reason, excluded_at) if the latest grouping run excluded the image, or None."""
    return connection.execute(select(GroupingExclusion.reason, GroupingExclusion.excluded_at)
                              .where(GroupingExclusion.image_id == image_id)).first()


def store(connection: Connection, now: dict[int, str], before: dict[int, str | None]) -> None:
    """Store `now` ({image id: why}) in place of `before`, and flag every image whose
    exclusion changed for the grouping job, in the caller's transaction."""
    newly_excluded = sorted(now.keys() - before.keys())
    included_again = sorted(before.keys() - now.keys())
    for chunk in chunks(newly_excluded + included_again):
        # updated_at kept: the image itself did not change (the feature job's changes
        # are told apart by it).
        connection.execute(update(Image).where(Image.id.in_(chunk))
                           .values(needs_grouping=True, updated_at=Image.updated_at))
    for chunk in chunks(included_again):
        connection.execute(delete(GroupingExclusion)
                           .where(GroupingExclusion.image_id.in_(chunk)))
    if newly_excluded:
        moment = utcnow()
        connection.execute(insert(GroupingExclusion), [
            {"image_id": i, "reason": now[i], "excluded_at": moment} for i in newly_excluded])
    for image_id in now.keys() & before.keys():
        if now[image_id] != before[image_id]:  # still excluded, by another pattern
            connection.execute(update(GroupingExclusion)
                               .where(GroupingExclusion.image_id == image_id)
                               .values(reason=now[image_id]))
