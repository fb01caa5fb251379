"""Prometheus text exposition of what the portal tracks: a fixed number of aggregate queries,
however many environments and runs there are."""

from collections.abc import Iterable

from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum

from environments.models import (
    DbSlot,
    Environment,
    EnvironmentStatus,
    Run,
    RunStep,
    SlotState,
)

_DURATION = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())


def _gauge(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    return lines + [f"{name}{labels} {value:g}" for labels, value in samples]


def _summary(name: str, help_text: str, rows: Iterable[dict], label_names: tuple[str, ...]
             ) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
    for row in rows:
        labels = ",".join(f'{label}="{row[label]}"' for label in label_names)
        seconds = row["total"].total_seconds() if row["total"] else 0.0
        lines += [f"{name}_sum{{{labels}}} {seconds:g}", f"{name}_count{{{labels}}} {row['n']}"]
    return lines


def _counts(rows: Iterable[tuple[str, int]], choices: Iterable[str], label: str
            ) -> list[tuple[str, float]]:
    found = dict(rows)
    return [(f'{{{label}="{choice}"}}', found.get(choice, 0)) for choice in choices]


def exposition() -> str:
    environments = Environment.objects.values_list("status").annotate(n=Count("id"))
    slots = DbSlot.objects.values_list("state").annotate(n=Count("id"))
    finished = {"started_at__isnull": False, "finished_at__isnull": False}
    runs = (Run.objects.filter(**finished).values("kind", "status")
            .annotate(n=Count("id"), total=Sum(_DURATION)).order_by("kind", "status"))
    steps = (RunStep.objects.filter(**finished).values("name")
             .annotate(n=Count("id"), total=Sum(_DURATION)).order_by("name"))
    queued = Environment.objects.filter(status=EnvironmentStatus.QUEUED).count()
    lines = [
        *_gauge("preview_environments", "Environments by status.",
                _counts(environments, EnvironmentStatus.values, "status")),
        *_gauge("preview_pool_slots", "DB pool slots by state.",
                _counts(slots, SlotState.values, "state")),
        *_gauge("preview_queue_length", "Environments waiting for a DB slot.", [("", queued)]),
        *_summary("preview_run_duration_seconds", "Finished runs.", runs, ("kind", "status")),
        *_summary("preview_step_duration_seconds", "Finished steps.", steps, ("name",)),
    ]
    return "\n".join(lines) + "\n"
