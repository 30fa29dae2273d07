"""The idempotency record's user index goes: the unique (user, key) constraint leads with
it. One index fewer to keep up per idempotent request. (Only the index: see
`common.migration_indexes`.)"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from common.migration_indexes import drop_single_column_indexes


class Migration(migrations.Migration):
    dependencies = [
        ("common", "0002_idempotency_record"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="idempotencyrecord",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="idempotency_records",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                drop_single_column_indexes([("common", "idempotencyrecord", "user")])
            ],
        ),
    ]
