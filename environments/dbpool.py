"""The DB pool's bookkeeping: which environment holds which slot lives in the portal database.

The pool backend (backends/pool/) makes and resets the databases; this module decides who has
which one, who waits for one, and in what order. State changes, like services.py.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, Exists, OuterRef, QuerySet, Value, When
from django.utils import timezone

from environments import audit, crypto, taskqueue
from environments.backends import get
from environments.backends.pool import DbInfo
from environments.models import (
    LEASABLE,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Run,
    RunStatus,
    SlotState,
)
from environments.refused import Refused

# A typo in a pool size must not create thousands of databases.
MAX_POOL_SIZE = 500


def slot_name(number: int) -> str:
    return f"{settings.PORTAL_POOL_PREFIX}{number:02d}"


def active_slots() -> QuerySet[DbSlot]:
    return DbSlot.objects.exclude(state=SlotState.RETIRED)


def ensure_pool_size(size: int) -> int:
    """Grow the pool to `size` slots (never shrinks); return how many were added. Re-running an
    interrupted grow finishes it; databases that already exist are adopted."""
    pool = get("pool")
    added = 0
    number = 0
    while active_slots().count() < size:
        number += 1
        name = slot_name(number)
        slot = DbSlot.objects.filter(name=name).first()
        if slot and slot.state != SlotState.RETIRED:
            continue
        secret = crypto.seal(pool.create(name))
        DbSlot.objects.update_or_create(name=name, defaults={
            "state": SlotState.FREE, "secret": secret, "seeded": False, "error": "",
            "environment": None, "leased_at": None, "last_reset_at": timezone.now(),
            "dataset": None,
        })
        added += 1
    return added


def resize_pool(size: int, *, actor: User, interface: str) -> dict[str, int]:
    """Grow, or shrink by retiring free slots (highest first). A size below the slots in use
    is refused with nothing changed."""
    active = active_slots().count()
    if size >= active:
        added, retired = ensure_pool_size(size), 0
    else:
        added, retired = 0, _shrink(active - size, size)
    _drop_retired()
    audit.record(actor, interface, "resize_pool", size=size, added=added, retired=retired)
    return {"size": active_slots().count(), "added": added, "retired": retired}


def _shrink(count: int, size: int) -> int:
    leased = DbSlot.objects.filter(state=SlotState.LEASED).count()
    if size < leased:
        raise Refused(f"cannot shrink the pool to {size}: {leased} slots are leased", 409,
                      {"size": size, "leased": leased})
    free = list(DbSlot.objects.filter(state__in=LEASABLE).order_by("-name")[:count])
    if len(free) < count:
        raise Refused(f"cannot shrink the pool to {size} now: only {len(free)} slots are free "
                      "(others are resetting); try again in a moment", 409, {"size": size})
    with transaction.atomic():
        for slot in free:
            if not DbSlot.objects.filter(pk=slot.pk, state=slot.state).update(
                state=SlotState.RETIRED, secret="", dataset=None
            ):
                transaction.set_rollback(True)
                raise Refused("a slot was leased while shrinking; nothing changed, try again",
                              409)
    return len(free)


def _drop_retired() -> None:
    """Remove retired slots' databases; idempotent, so an interrupted shrink finishes later."""
    for slot in DbSlot.objects.filter(state=SlotState.RETIRED):
        get("pool").drop(slot.name)


def slot_connection(slot: DbSlot) -> DbInfo:
    return get("pool").connection(slot.name, crypto.unseal(slot.secret))


def lease_slot(environment: Environment, dataset: int | None = None) -> DbSlot | None:
    """The environment's slot, leasing one; None when the pool is full. A warm slot of
    `dataset` (a DatasetVersion's id) comes first, then a blank one, then a warm slot of
    another dataset (emptied by lease_db)."""
    held = DbSlot.objects.filter(environment=environment).first()
    if held:
        return held
    with transaction.atomic():
        # Locking the free slots makes concurrent leases take turns, so each one counts the
        # free slots and the queue ahead of it at one moment.
        free = list(
            DbSlot.objects.select_for_update().filter(state__in=LEASABLE)
            .order_by("name").values_list("pk", "state", "dataset_id")
        )
        # Oldest queued first: a newer environment does not take a slot an older one waits for.
        if _waiting_ahead(environment) >= len(free):
            return None
        for candidate, state, _ in sorted(free, key=lambda c: _preference(dataset, *c[1:])):
            if DbSlot.objects.filter(pk=candidate, state=state).update(
                state=SlotState.LEASED, environment=environment, leased_at=timezone.now()
            ):
                return DbSlot.objects.get(pk=candidate)
    return None


def _preference(wanted: int | None, state: str, dataset: int | None) -> int:
    if wanted is not None and dataset == wanted:
        return 0
    return 1 if state == SlotState.FREE else 2


def unlease_slot(slot: DbSlot) -> None:
    """Give back a slot nothing was written to (its check failed): free at once, no reset,
    still warm if it was."""
    DbSlot.objects.filter(pk=slot.pk, state=SlotState.LEASED, seeded=False).update(
        state=Case(When(dataset__isnull=False, then=Value(SlotState.WARM)),
                   default=Value(SlotState.FREE)),
        environment=None, leased_at=None,
    )


def mark_seeded(slot: DbSlot) -> None:
    DbSlot.objects.filter(pk=slot.pk).update(seeded=True)


def _waiting_ahead(environment: Environment) -> int:
    """Queued environments older than this one that hold no slot yet."""
    holders = DbSlot.objects.filter(environment__isnull=False).values("environment_id")
    return Environment.objects.queued_oldest_first().filter(
        queued_at__lt=environment.queued_at or timezone.now()
    ).exclude(pk__in=holders).count()


def release_slot(environment: Environment) -> DbSlot | None:
    slot = DbSlot.objects.filter(environment=environment).first()
    if slot is None:
        return None
    # Conditional: of two releases at once (a teardown and the reconciler), one asks for the
    # reset; two resets at once could leave the slot free with a password not its own.
    if DbSlot.objects.filter(pk=slot.pk, environment=environment).update(
        state=SlotState.RESETTING, environment=None, leased_at=None,
        resetting_since=timezone.now(),
    ):
        taskqueue.enqueue_slot_reset(slot.pk)
    return slot


def ask_reset_again(slot: DbSlot) -> None:
    """A reset that was asked for and never ran (its task was lost): ask once more, unless
    someone else just did (the same compare-and-set as release_slot's)."""
    if DbSlot.objects.filter(pk=slot.pk, state=SlotState.RESETTING, error="",
                             resetting_since=slot.resetting_since).update(
        resetting_since=timezone.now()
    ):
        taskqueue.enqueue_slot_reset(slot.pk)


def finish_slot_reset(slot: DbSlot, secret: str = "", error: str = "") -> None:
    """A failed reset keeps the slot out of rotation with its error shown: never handed out
    dirty. A later reset (retried on schedule) puts it back."""
    if error:
        DbSlot.objects.filter(pk=slot.pk).update(error=error)
        return
    DbSlot.objects.filter(pk=slot.pk, state=SlotState.RESETTING).update(
        state=SlotState.FREE, error="", seeded=False, secret=crypto.seal(secret),
        last_reset_at=timezone.now(), dataset=None,
    )
    wake_queued()


def retry_failed_resets() -> int:
    stuck = DbSlot.objects.filter(state=SlotState.RESETTING).exclude(error="")
    for slot in stuck:
        taskqueue.enqueue_slot_reset(slot.pk)
    return len(stuck)


def wake_queued() -> None:
    """Hand freed slots to the oldest queued environments."""
    for run in runs_to_wake():
        taskqueue.enqueue_run(run.pk)


def runs_to_wake() -> list[Run]:
    """The waiting run of each of the oldest queued environments, one per free slot (two
    queries, however long the queue)."""
    free = DbSlot.objects.filter(state__in=LEASABLE).count()
    if not free:
        return []
    waiting = Run.objects.filter(
        status=RunStatus.WAITING, environment__status=EnvironmentStatus.QUEUED
    ).select_related("environment__project").order_by(
        "environment__queued_at", "environment_id", "id"
    )
    first_of_each: dict[int, Run] = {}
    for run in waiting:
        first_of_each.setdefault(run.environment_id, run)
        if len(first_of_each) == free:
            break
    return list(first_of_each.values())


def queue_position(environment: Environment) -> int | None:
    if environment.status != EnvironmentStatus.QUEUED:
        return None
    return _waiting_ahead(environment) + 1


def slot_free_by(position: int) -> datetime | None:
    """When, at the latest, the slot for queue position `position` frees: leased slots come
    back when their environments expire (pinned ones never do); a teardown is sooner."""
    holders = DbSlot.objects.filter(state=SlotState.LEASED).values("environment_id")
    expiries = Environment.objects.filter(
        pk__in=holders, pinned=False, expires_at__isnull=False
    ).order_by("expires_at").values_list("expires_at", flat=True)[position - 1:position]
    return next(iter(expiries), None)


def queue_positions() -> dict[int, int]:
    """queue_position of every queued environment in one query, for lists of environments."""
    queued = list(Environment.objects.queued_oldest_first().annotate(
        holds=Exists(DbSlot.objects.filter(environment=OuterRef("pk")))
    ).values_list("pk", "queued_at", "holds"))
    # As in _waiting_ahead: one that already holds a slot is on its way, not ahead in the queue.
    times = sorted(at for _, at, holds in queued if at is not None and not holds)
    return {pk: bisect_left(times, at or timezone.now()) + 1 for pk, at, _ in queued}
