"""`manage.py generate_statements`: the same batch as the API from the command line, with a
progress bar, rendered in-process without a broker; running it again adds nothing."""

from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from reports.commands_progress import progress_bar
from reports.models import BatchStatus, Statement, StatementBatch
from tests.reports.conftest import pdf_text
from tests.reports.ledger_book import PERIOD, seed_book

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def generate(*args: str) -> str:
    out = StringIO()
    call_command("generate_statements", *args, stdout=out)
    return out.getvalue()


def test_progress_bar():
    assert (
        progress_bar(done=3, failed=1, total=8) == "[###############...............] 4/8 (1 failed)"
    )
    assert progress_bar(done=0, failed=0, total=0).startswith("[" + "#" * 30 + "]")


def test_generates_every_statement_with_progress(django_capture_on_commit_callbacks):
    book = seed_book()
    with django_capture_on_commit_callbacks(execute=True):
        output = generate("--period", PERIOD)
    batch = StatementBatch.objects.get()
    assert (batch.status, batch.total, batch.done, batch.requested_by) == (
        BatchStatus.COMPLETED,
        3,
        3,
        None,
    )
    assert "[" + "#" * 30 + "] 3/3 (0 failed)" in output
    assert "completed: 3 done, 0 failed of 3" in output
    for statement in Statement.objects.select_related("investor"):
        assert f"investor {statement.investor_id}: " in output
        assert statement.file.path in output  # local storage: the PDF's path, to open it
        assert statement.investor is not None
        with statement.file.open("rb") as handle:
            assert statement.investor.legal_name in pdf_text(handle.read())
    assert len(mail.outbox) == 3
    # again: a new batch, nothing new
    with django_capture_on_commit_callbacks(execute=True):
        generate("--period", PERIOD, "--offering", str(book.offering.pk))
        generate("--period", PERIOD)
    assert Statement.objects.filter(offering__isnull=True).count() == 3
    assert Statement.objects.filter(offering=book.offering).count() == 3
    assert len(mail.outbox) == 6  # the three offering statements are new, the rest are not


def test_a_captable_report_from_the_command_line():
    book = seed_book()
    output = generate(
        "--kind", "captable_report", "--period", "2025-09-30", "--offering", str(book.offering.pk)
    )
    report = Statement.objects.get(kind="captable_report")
    assert (report.investor_id, report.offering_id, report.posting_count) == (
        None,
        book.offering.pk,
        8,
    )
    assert output.startswith("Generated: ")
    again = generate(
        "--kind", "captable_report", "--period", "2025-09-30", "--offering", str(book.offering.pk)
    )
    assert again.startswith("Already generated: ")
    assert Statement.objects.filter(kind="captable_report").count() == 1
    assert mail.outbox == []  # a sponsor's report notifies no investor


def test_refusals_are_command_errors():
    with pytest.raises(CommandError, match="not over"):
        generate("--period", "2999-Q1")
    with pytest.raises(CommandError, match="is not one of"):
        generate("--period", "last quarter")
    with pytest.raises(CommandError, match="--offering is required"):
        generate("--kind", "captable_report", "--period", "2025-09-30")
