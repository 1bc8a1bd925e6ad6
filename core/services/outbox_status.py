"""What `fatoura outbox status` shows: the outbox per channel, large announcements' progress, dead letters."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from core.db import Database
from core.models import OutboxMessage
from core.services.outbox import DEAD, DELIVERED, QUEUED, SENDING, SKIPPED

COLUMNS = (QUEUED, SENDING, DELIVERED, DEAD, SKIPPED)
LABELS = {QUEUED: "queued", SENDING: "in flight", DELIVERED: "delivered", DEAD: "dead", SKIPPED: "skipped"}
BAR_WIDTH = 30
BIG_BATCH = 20  # a batch (one announcement) of at least this many messages gets a progress bar


@dataclass
class Status:
    channels: dict[str, dict[str, int]] = field(default_factory=dict)
    batches: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    dead_reasons: list[tuple[str, int]] = field(default_factory=list)


async def outbox_status(db: Database, batches: int = 10, reasons: int = 10) -> Status:
    status = Status()
    async with db.session() as session:
        rows = await session.execute(select(OutboxMessage.channel, OutboxMessage.status, func.count())
                                     .group_by(OutboxMessage.channel, OutboxMessage.status))
        for channel, state, count in rows.all():
            status.channels.setdefault(channel, dict.fromkeys(COLUMNS, 0))[state] = count
        rows = await session.execute(
            select(OutboxMessage.batch, OutboxMessage.status, func.count(), func.min(OutboxMessage.id))
            .where(OutboxMessage.batch.is_not(None)).group_by(OutboxMessage.batch, OutboxMessage.status))
        by_batch: dict[str, dict[str, int]] = {}
        first: dict[str, int] = {}
        for batch, state, count, first_id in rows.all():
            by_batch.setdefault(batch, dict.fromkeys(COLUMNS, 0))[state] = count
            first[batch] = min(first.get(batch, first_id), first_id)
        big = [(b, c) for b, c in by_batch.items() if sum(c.values()) >= BIG_BATCH]
        status.batches = sorted(big, key=lambda item: first[item[0]], reverse=True)[:batches]
        reason = func.coalesce(func.substr(OutboxMessage.last_error, 1, 120), "").label("reason")
        rows = await session.execute(select(reason, func.count()).where(OutboxMessage.status == DEAD)
                                     .group_by(reason).order_by(func.count().desc()).limit(reasons))
        status.dead_reasons = [(reason or "(no reason recorded)", count) for reason, count in rows.all()]
    return status


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = width if total == 0 else done * width // total
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render(status: Status) -> str:
    lines = [f"{'channel':<12}" + "".join(f"{LABELS[c]:>11}" for c in COLUMNS)]
    totals = dict.fromkeys(COLUMNS, 0)
    for channel in sorted(status.channels):
        counts = status.channels[channel]
        lines.append(f"{channel:<12}" + "".join(f"{counts[c]:>11}" for c in COLUMNS))
        for c in COLUMNS:
            totals[c] += counts[c]
    lines.append(f"{'all':<12}" + "".join(f"{totals[c]:>11}" for c in COLUMNS))
    if status.batches:
        lines += ["", "announcements:"]
        for batch, counts in status.batches:
            total = sum(counts.values())
            finished = counts[DELIVERED] + counts[DEAD] + counts[SKIPPED]
            lines.append(f"  {batch[:40]:<40} {bar(finished, total)} {finished}/{total} "
                         f"({100 * finished // max(total, 1)}%), {counts[DEAD]} dead")
    if status.dead_reasons:
        lines += ["", "dead letters by reason:"]
        lines += [f"  {count:>7}  {reason}" for reason, count in status.dead_reasons]
    return "\n".join(lines)
