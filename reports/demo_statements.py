"""The demo's statements: every document the demo's data already supports, generated through
the same service as the API and the batches (stored once, recorded, investor notified), and a
copy of each written under one folder with a readable name, so a person can open them.

The demo's activity happens today, so the documents about one event are what it has: a
subscription confirmation per accepted subscription, a distribution notice per paid payout,
and an annual tax summary for a finished year with payouts. Periodic statements and cap-table
reports cover periods that are over (`manage.py generate_statements --period ...` once the
quarter has ended). Re-runnable: an existing statement is found, not made again, and its copy
is written over with the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.text import slugify

from captable.models import Payout, Subscription, SubscriptionStatus
from reports.event_kinds import distribution_notice_scope, subscription_confirmation_scope
from reports.kinds import StatementScope
from reports.models import Statement, StatementKind
from reports.periods import period_parse
from reports.services import statement_generate


@dataclass(frozen=True)
class WrittenStatement:
    statement: Statement
    path: Path
    created: bool


def demo_statements_dir() -> Path:
    """var/statements beside the media folder (a test's temporary one in tests)."""
    configured = getattr(settings, "DEMO_STATEMENTS_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT).parent / "statements"


def demo_scopes(*, today: date) -> list[StatementScope]:
    accepted = Subscription.objects.filter(status=SubscriptionStatus.ACCEPTED).order_by("pk")
    scopes = [subscription_confirmation_scope(s.pk) for s in accepted]
    paid = Payout.objects.filter(entry__isnull=False).order_by("distribution_id", "investor_id")
    scopes += [distribution_notice_scope(p.distribution_id, p.investor_id) for p in paid]
    last_year = period_parse(str(today.year - 1))
    with_payouts_last_year = (
        paid.filter(entry__effective_at__year=last_year.start.year)
        .values_list("investor_id", flat=True)
        .distinct()
    )
    scopes += [
        StatementScope(StatementKind.ANNUAL_TAX_SUMMARY, last_year, investor_id=investor_id)
        for investor_id in sorted(set(with_payouts_last_year))
    ]
    return scopes


def readable_name(statement: Statement) -> str:
    who = slugify(statement.investor.legal_name) if statement.investor else "sponsor"
    subject = f"-{statement.subject.replace(':', '-')}" if statement.subject else ""
    return f"{statement.kind.replace('_', '-')}-{who}{subject}-{statement.period}.pdf"


def demo_statements_write(*, directory: Path | None = None) -> list[WrittenStatement]:
    """Generate (or find) each statement and copy it into `directory`. Call it outside a
    transaction: rendering must not hold one open."""
    target = directory or demo_statements_dir()
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for scope in demo_scopes(today=timezone.localdate()):
        generated = statement_generate(scope=scope)
        statement = generated.statement
        path = target / readable_name(statement)
        with default_storage.open(str(statement.file.name), "rb") as stored:
            path.write_bytes(stored.read())
        written.append(WrittenStatement(statement, path, generated.created))
    return written
