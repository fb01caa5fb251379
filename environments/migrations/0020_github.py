import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('environments', '0010_smoke_config_and_errors'),
    ]

    operations = [
        migrations.AddField(
            model_name='environment',
            name='github_comment_id',
            field=models.BigIntegerField(blank=True, help_text='The pull-request comment each run edits.', null=True),
        ),
        migrations.AddField(
            model_name='environment',
            name='relaunch',
            field=models.JSONField(blank=True, help_text='A launch asked for during the teardown, carried out once it is gone.', null=True),
        ),
        migrations.AddField(
            model_name='project',
            name='deploy_drafts',
            field=models.BooleanField(default=False, help_text='Draft pull requests get an environment too.'),
        ),
        migrations.AddField(
            model_name='project',
            name='deploy_forks',
            field=models.BooleanField(default=False, help_text="Pull requests from forks get an environment: their code then runs with this project's database and settings."),
        ),
        migrations.AddField(
            model_name='project',
            name='webhook_secret',
            field=models.TextField(blank=True, help_text='Sealed. When set, GitHub deliveries for this repository must be signed with it instead of PORTAL_GITHUB_WEBHOOK_SECRET.'),
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('delivery_id', models.CharField(max_length=100)),
                ('event', models.CharField(max_length=50)),
                ('action', models.CharField(blank=True, max_length=50)),
                ('repository', models.CharField(blank=True, help_text='owner/name, lower case.', max_length=200)),
                ('pull_request', models.PositiveIntegerField(blank=True, null=True)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('result', models.JSONField(blank=True, default=dict)),
            ],
            options={
                'ordering': ['-received_at', '-id'],
                'indexes': [models.Index(fields=['repository', 'pull_request'], name='environment_reposit_a9f9c3_idx')],
                'constraints': [models.UniqueConstraint(fields=('delivery_id',), name='one_row_per_delivery')],
            },
        ),
    ]
