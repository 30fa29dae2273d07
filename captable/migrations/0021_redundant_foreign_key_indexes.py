"""Subscriptions and their history lose the single-column foreign-key indexes that composite
indexes already lead with (`subscription_waitlist`: offering; `subscription_investor`:
investor; (subscription, created_at): subscription). One index fewer to keep up per insert on
the subscribe path, and no single-column offering index for the planner to pick, without
statistics (a new table), for an investor's totals in an offering: it filtered every
subscription of the offering on each subscribe.

Only the indexes are dropped (`db_index=False` in the state): an AlterField would make SQLite
rebuild the tables, which drops their append-only triggers."""

import django.db.models.deletion
from django.db import migrations, models

from common.migration_indexes import drop_single_column_indexes

INDEXED = [
    ("captable", "subscription", "investor"),
    ("captable", "subscription", "offering"),
    ("captable", "subscriptionstatuschange", "subscription"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("captable", "0020_account_partial_indexes"),
        ("investors", "0002_history_append_only"),
        ("offerings", "0007_property_photo"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="subscription",
                    name="investor",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriptions",
                        to="investors.investor",
                    ),
                ),
                migrations.AlterField(
                    model_name="subscription",
                    name="offering",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriptions",
                        to="offerings.offering",
                    ),
                ),
                migrations.AlterField(
                    model_name="subscriptionstatuschange",
                    name="subscription",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="status_changes",
                        to="captable.subscription",
                    ),
                ),
            ],
            database_operations=[drop_single_column_indexes(INDEXED)],
        ),
    ]
