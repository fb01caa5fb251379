from django.db import migrations

SCHEDULES = {
    # A slot whose reset failed (pool server down) stays out of rotation until a reset works.
    "retry failed slot resets": "environments.tasks.retry_failed_resets",
}


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func in SCHEDULES.items():
        Schedule.objects.get_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": 1, "repeats": -1}
        )


def remove_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("environments", "0003_slot_secrets_and_seed"),
        ("django_q", "0018_task_success_index"),
    ]
    operations = [migrations.RunPython(create_schedules, remove_schedules)]
