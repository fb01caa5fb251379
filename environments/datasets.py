"""Datasets: a project's SQL dump, versioned. Each version is restored once into a template,
then copied into DB slots: free ones ahead of time ("warm"), so a launch gets realistic data
with no restore on its path, or a blank one during lease_db when no warm slot is left.

State changes, like dbpool.py; the pool backend does the restoring and copying.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, BinaryIO

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from environments import audit, crypto, dbpool
from environments.audit import User
from environments.backends import BackendError, get
from environments.models import (
    DatasetState,
    DatasetVersion,
    DbSlot,
    Environment,
    Project,
    SlotState,
)
from environments.refused import Refused

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# A restore whose task was lost (its worker died) is asked for again after this long.
RESTORE_PATIENCE = timedelta(minutes=15)


def enqueue(task: str, pk: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(f"environments.tasks.{task}", pk,
                                             task_name=f"{task}-{pk}"))


def max_bytes() -> int:
    return int(settings.PORTAL_DATASET_MAX_MB * 1024 * 1024)


def _too_big() -> Refused:
    limit = settings.PORTAL_DATASET_MAX_MB
    return Refused(f"the dump is larger than PORTAL_DATASET_MAX_MB ({limit:g} MB)", 413,
                   {"max_mb": limit})


def read_dump(stream: BinaryIO, length: int | None) -> bytes:
    """The dump sent by a client, refused as soon as it is known to be too big: from its
    declared length before any of it is read, otherwise at the first chunk past the limit."""
    limit = max_bytes()
    if length is not None and length > limit:
        raise _too_big()
    chunks, size = [], 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_big()
        chunks.append(chunk)
    return b"".join(chunks)


def upload(project: Project, content: bytes, *, actor: User, interface: str) -> DatasetVersion:
    """A new version of the project's dataset; its template is restored in the background and
    it serves once that succeeded (until then, and if it fails, the previous one does)."""
    if len(content) > max_bytes():
        raise _too_big()
    if not content.strip():
        raise Refused("the dump is empty", 400)
    digest = hashlib.sha256(content).hexdigest()
    compressed = content.startswith(GZIP_MAGIC)
    # Keyed by content: uploading the same dump twice stores it once.
    key = f"datasets/{project.name}/{digest}.sql" + (".gz" if compressed else "")
    get("storage").save(key, content, "application/gzip" if compressed else "application/sql")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        last = project.dataset_versions.aggregate(last=Max("number"))["last"] or 0
        version = DatasetVersion.objects.create(
            project=project, number=last + 1, key=key, size=len(content), sha256=digest,
            compressed=compressed, uploaded_by=actor,
        )
        audit.record(actor, interface, "upload_dataset", project=project.name,
              version=version.number, size=version.size, sha256=digest)
        enqueue("prepare_dataset", version.pk)
    return version


def current(project: Project) -> DatasetVersion | None:
    """The version slots get: the newest that restored without error."""
    return project.dataset_versions.filter(state=DatasetState.READY).order_by("-number").first()


def _dump(version: DatasetVersion) -> IO[bytes]:
    content = get("storage").read(version.key)
    if hashlib.sha256(content).hexdigest() != version.sha256:
        raise BackendError(f"the stored dump of {version} is not the one uploaded "
                           "(its checksum differs)")
    raw = io.BytesIO(content)
    return gzip.GzipFile(fileobj=raw) if version.compressed else raw


def prepare(version_id: int) -> None:
    """Restore the version into its template; broken with the server's words if that fails."""
    version = DatasetVersion.objects.select_related("project").filter(
        pk=version_id, state=DatasetState.RESTORING).first()
    if version is None:
        return
    pool = get("pool")
    started = time.monotonic()
    try:
        secret = pool.restore_template(pool.template(version.pk), _dump(version))
    except BackendError as exc:
        DatasetVersion.objects.filter(pk=version.pk).update(state=DatasetState.BROKEN,
                                                             error=str(exc))
        # A template nothing uses: a failure to drop it is not worth saying over the error.
        with suppress(BackendError):
            pool.drop_template(pool.template(version.pk))
        return
    DatasetVersion.objects.filter(pk=version.pk).update(
        state=DatasetState.READY, template_secret=crypto.seal(secret),
        restore_seconds=time.monotonic() - started,
    )
    _drop_older_templates(version)
    warm()


def _drop_older_templates(version: DatasetVersion) -> None:
    """Leased slots keep their copy; the templates of older versions are not needed again."""
    pool = get("pool")
    older = version.project.dataset_versions.filter(number__lt=version.number)
    for pk in older.exclude(template_secret="").values_list("pk", flat=True):
        pool.drop_template(pool.template(pk))
        DatasetVersion.objects.filter(pk=pk).update(template_secret="")


def _copy(slot: DbSlot, version: DatasetVersion, progress: Callable[[str], None]) -> float:
    pool = get("pool")
    started = time.monotonic()
    pool.copy_template(pool.template(version.pk), crypto.unseal(version.template_secret),
                       slot.name, crypto.unseal(slot.secret), progress)
    return time.monotonic() - started


# Warm slots.

def warm() -> int:
    """Start restoring free slots for the projects short of warm slots, the one lacking most
    first; a warm slot of an older version of the project is re-warmed before a blank one is
    taken. Queued launches come first: while one waits for a slot, free ones stay blank for it.
    Returns how many restores were started."""
    _ask_lost_restores_again()
    holders = DbSlot.objects.filter(environment__isnull=False).values("environment_id")
    if Environment.objects.queued_oldest_first().exclude(pk__in=holders).exists():
        return 0
    started = 0
    while (version := _neediest()) is not None and (slot := _claim_for(version)) is not None:
        enqueue("restore_slot", slot.pk)
        started += 1
    return started


def _neediest() -> DatasetVersion | None:
    best: tuple[int, DatasetVersion] | None = None
    for project in Project.objects.filter(warm_slots__gt=0):
        version = current(project)
        if version is None:
            continue
        have = DbSlot.objects.filter(
            dataset=version, state__in=(SlotState.WARM, SlotState.RESTORING)).count()
        lacking = project.warm_slots - have
        if lacking > 0 and (best is None or lacking > best[0]):
            best = (lacking, version)
    return best[1] if best else None


def _claim_for(version: DatasetVersion) -> DbSlot | None:
    stale = Q(state=SlotState.WARM, dataset__project=version.project_id,
              dataset__number__lt=version.number)
    candidates = DbSlot.objects.filter(stale | Q(state=SlotState.FREE)).order_by(
        "state", "name").values_list("pk", "state", "dataset_id")
    # "free" sorts before "warm": re-warm stale slots first, then take blank ones.
    for pk, state, dataset_id in sorted(candidates, key=lambda c: c[1] != SlotState.WARM):
        if DbSlot.objects.filter(pk=pk, state=state, dataset_id=dataset_id).update(
            state=SlotState.RESTORING, dataset=version, resetting_since=timezone.now(),
        ):
            return DbSlot.objects.get(pk=pk)
    return None


def _ask_lost_restores_again() -> None:
    since = timezone.now() - RESTORE_PATIENCE
    for slot in DbSlot.objects.filter(state=SlotState.RESTORING, resetting_since__lt=since):
        if DbSlot.objects.filter(pk=slot.pk, resetting_since=slot.resetting_since).update(
            resetting_since=timezone.now()
        ):
            enqueue("restore_slot", slot.pk)


def restore_slot(slot_id: int) -> None:
    """Copy the slot's dataset into it; a failure puts the slot out of rotation (broken, with
    the error) until the scheduled reset empties it."""
    slot = DbSlot.objects.select_related("dataset__project").filter(
        pk=slot_id, state=SlotState.RESTORING).first()
    if slot is None or slot.dataset is None:
        return
    # A newer version became current since the slot was claimed (the older template is gone).
    version = current(slot.dataset.project) or slot.dataset
    if version != slot.dataset:
        if not DbSlot.objects.filter(pk=slot.pk, state=SlotState.RESTORING,
                                     dataset=slot.dataset).update(dataset=version):
            return
        slot.dataset = version
    try:
        _copy(slot, slot.dataset, lambda _text: None)
    except BackendError as exc:
        DbSlot.objects.filter(pk=slot.pk, state=SlotState.RESTORING).update(
            state=SlotState.RESETTING, error=f"restore of {slot.dataset} failed: {exc}",
            resetting_since=timezone.now(),
        )
        return
    if DbSlot.objects.filter(pk=slot.pk, state=SlotState.RESTORING,
                             dataset=slot.dataset).update(state=SlotState.WARM,
                                                          last_reset_at=timezone.now()):
        dbpool.wake_queued()
    warm()  # a newer version may have come while this one was copied


# The launch path.

def fill_leased(slot: DbSlot, project: Project, log: Callable[[str], None]) -> None:
    """Give a slot just leased (not yet prepared for its environment) the project's current
    dataset: nothing to do for a warm slot of that version; otherwise it is copied now, the
    slot emptied first (it may hold another dataset, or half of one from an interrupted
    run)."""
    version = current(project)
    if slot.dataset_id == (version.pk if version else None):
        if version:
            log(f"{slot.name} was warm with dataset {version}: no restore")
        return
    if version is None:
        secret = get("pool").reset(slot.name)  # another project's data: out before this one's
        DbSlot.objects.filter(pk=slot.pk).update(dataset=None, secret=crypto.seal(secret))
        log(f"emptied {slot.name} of dataset {slot.dataset}")
        return
    log(f"no warm slot of dataset {version}: restoring it into {slot.name} "
        f"({version.size / 1e6:.1f} MB dump)")
    seconds = _copy(slot, version, log)
    DbSlot.objects.filter(pk=slot.pk).update(dataset=version)
    log(f"restored dataset {version} into {slot.name} in {seconds:.1f} s")


@dataclass(frozen=True)
class PoolGroup:
    """The pool's slots holding one dataset version (or none), counted by shown state."""

    project: str
    version: DatasetVersion | None
    current: bool
    warm_wanted: int
    counts: list[tuple[str, int]]


def pool_groups(rows: list[tuple[DbSlot, str]], states: Sequence[str]) -> list[PoolGroup]:
    """(slot, shown state) rows, their datasets loaded, grouped by project and version:
    blank slots first, then each project's versions newest first."""
    by_version: dict[int | None, list[str]] = {}
    for slot, state in rows:
        by_version.setdefault(slot.dataset_id, []).append(state)
    versions = {slot.dataset_id: slot.dataset for slot, _ in rows}
    wanted = dict(Project.objects.values_list("name", "warm_slots"))
    newest = dict(DatasetVersion.objects.filter(state=DatasetState.READY).values(
        "project__name").annotate(n=Max("number")).values_list("project__name", "n"))
    groups = []
    for pk, shown in by_version.items():
        version = versions[pk]
        project = version.project.name if version else ""
        counts = Counter(shown)
        groups.append(PoolGroup(
            project=project, version=version,
            current=bool(version) and newest.get(project) == version.number,
            warm_wanted=wanted.get(project, 0) if version else 0,
            counts=[(state, counts[state]) for state in states]))
    return sorted(groups, key=lambda g: (g.project, -(g.version.number if g.version else 0)))
