"""Statements over HTTP: staff start a batch, follow it, and investors download only their
own (another investor's statement is a 404, never a 403). Without a broker the batch runs
in-process after commit, through the same outbox messages and tasks a worker would run.

The test's transaction never commits (SQLite cannot empty append-only tables afterwards),
so the after-commit work is run where the commit would run it: at the end of
`django_capture_on_commit_callbacks(execute=True)`, callbacks it adds included. The real
commits, broker and worker are in `test_worker.py`."""

import pytest
from django.core import mail

from reports.kinds import StatementScope
from reports.models import ItemStatus, Statement, StatementBatch, StatementBatchItem
from reports.periods import period_parse
from reports.services import statement_generate
from tests.conftest import bearer, new_user
from tests.investors.factories import post_json
from tests.offerings.factories import approved_sponsor, member_of
from tests.reports.conftest import pdf_text
from tests.reports.failing_storage import RefusingStorage
from tests.reports.ledger_book import PERIOD, seed_book

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs what would run after the request's commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def book():
    return seed_book()


@pytest.fixture
def staff():
    return new_user(is_staff=True)


def start_batch(client, staff, **body):
    return post_json(
        client, "/api/v1/statements/batches", {"period": PERIOD, **body}, **bearer(staff)
    )


def generated(client, staff, committed, **body):
    with committed():
        response = start_batch(client, staff, **body)
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "pending"  # nothing runs before the commit
    return client.get(f"/api/v1/tasks/{response.json()['id']}", **bearer(staff)).json()


def test_a_batch_generates_every_investors_statement_and_emails_them(
    api_client, book, staff, committed
):
    task = generated(api_client, staff, committed)
    assert (task["status"], task["total"], task["done"], task["failed"]) == (
        "completed",
        3,
        3,
        0,
    )
    progress = api_client.get(f"/api/v1/tasks/{task['id']}", **bearer(staff)).json()
    assert (progress["done"], progress["pending"], progress["problems"]) == (3, 0, [])
    statements = Statement.objects.order_by("investor_id")
    assert [s.investor_id for s in statements] == sorted(i.pk for i in book.investors)
    assert all(s.notified_at is not None for s in statements)
    # one email each, on commit, linking to the PDF (never attaching it)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(i.user.email for i in book.investors)
    bob_mail = next(m for m in mail.outbox if m.to == [book.bob.user.email])
    bob_statement = statements.get(investor=book.bob)
    assert "2025-Q3" in bob_mail.subject
    assert f"/api/v1/statements/{bob_statement.pk}/pdf" in bob_mail.body
    assert bob_mail.attachments == []


def test_running_the_batch_again_duplicates_nothing(api_client, book, staff, committed):
    first = generated(api_client, staff, committed)
    ids = set(Statement.objects.values_list("pk", flat=True))
    second = generated(api_client, staff, committed)
    assert second["id"] != first["id"]
    assert (second["status"], second["done"]) == ("completed", 3)
    assert set(Statement.objects.values_list("pk", flat=True)) == ids
    assert len(mail.outbox) == 3  # nobody is emailed twice


def test_investors_see_and_download_only_their_own(api_client, book, staff, committed):
    generated(api_client, staff, committed)
    alices = Statement.objects.get(investor=book.alice)
    as_bob = bearer(book.bob.user)
    # bob's list has his statement only
    listed = api_client.get("/api/v1/statements", **as_bob).json()
    assert [s["investor_id"] for s in listed["items"]] == [book.bob.pk]
    assert listed["count"] == 1
    # alice's statement and PDF do not exist for bob — even filtering by her id
    for path in (f"/api/v1/statements/{alices.pk}", f"/api/v1/statements/{alices.pk}/pdf"):
        response = api_client.get(path, **as_bob)
        assert response.status_code == 404
        assert response.json()["code"] == "statement_not_found"
    filtered = api_client.get(f"/api/v1/statements?investor_id={book.alice.pk}", **as_bob)
    assert filtered.json()["items"] == []
    # alice downloads hers: a PDF with her name, units and amounts
    response = api_client.get(f"/api/v1/statements/{alices.pk}/pdf", **bearer(book.alice.user))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    text = pdf_text(b"".join(response.streaming_content))
    assert "Alice Andersen" in text
    assert "$25,000.00" in text
    assert alices.fingerprint in text


def test_staff_see_every_statement_and_filter_by_investor(api_client, book, staff, committed):
    generated(api_client, staff, committed)
    everyone = api_client.get("/api/v1/statements", **bearer(staff)).json()
    assert everyone["count"] == 3
    only_bob = api_client.get(f"/api/v1/statements?investor_id={book.bob.pk}", **bearer(staff))
    assert [s["investor_id"] for s in only_bob.json()["items"]] == [book.bob.pk]
    carols = Statement.objects.get(investor=book.carol)
    response = api_client.get(f"/api/v1/statements/{carols.pk}/pdf", **bearer(staff))
    assert response.status_code == 200
    assert "Carol Castillo" in pdf_text(b"".join(response.streaming_content))
    detail = api_client.get(f"/api/v1/statements/{carols.pk}", **bearer(staff)).json()
    assert detail["pdf_url"] == f"/api/v1/statements/{carols.pk}/pdf"
    assert detail["posting_count"] == 1


def test_only_staff_start_and_follow_batches(api_client, book, staff, committed):
    refused = start_batch(api_client, book.alice.user)
    assert refused.status_code == 403
    assert StatementBatch.objects.count() == 0
    task = generated(api_client, staff, committed)
    assert (
        api_client.get(f"/api/v1/tasks/{task['id']}", **bearer(book.alice.user)).status_code == 403
    )
    assert api_client.get(f"/api/v1/tasks/{task['id'] + 1}", **bearer(staff)).status_code == 404
    assert api_client.get("/api/v1/statements").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"period": "2999-Q1"}, 409, "period_not_over"),
        ({"period": "2025-Q9"}, 400, "period_invalid"),
        ({"period": PERIOD, "offering_id": 999_999}, 404, "offering_not_found"),
        ({"period": PERIOD, "surprise": True}, 422, "invalid_request"),
    ],
)
def test_batch_requests_are_checked(api_client, staff, body, status, code):
    response = post_json(api_client, "/api/v1/statements/batches", body, **bearer(staff))
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert StatementBatch.objects.count() == 0


def test_a_batch_for_one_offering_makes_offering_statements(api_client, book, staff, committed):
    task = generated(api_client, staff, committed, offering_id=book.offering.pk)
    assert (task["status"], task["done"], task["offering_id"]) == (
        "completed",
        3,
        book.offering.pk,
    )
    assert set(Statement.objects.values_list("offering_id", flat=True)) == {book.offering.pk}


def test_a_failing_statement_is_retried_then_reported_not_dropped(
    api_client, book, staff, committed, settings
):
    RefusingStorage.refused_investor_id = book.bob.pk
    RefusingStorage.attempts = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.reports.failing_storage.RefusingStorage"},
    }
    task = generated(api_client, staff, committed)
    assert (task["status"], task["done"], task["failed"]) == ("completed_with_failures", 2, 1)
    (problem,) = task["problems"]
    assert problem["investor_id"] == book.bob.pk
    assert problem["status"] == "failed"
    assert problem["attempts"] == 4  # the first try and three retries
    assert "storage unavailable" in problem["error"]
    assert RefusingStorage.attempts == 4
    item = StatementBatchItem.objects.get(investor=book.bob)
    assert item.status == ItemStatus.FAILED
    assert not Statement.objects.filter(investor=book.bob).exists()
    assert len(mail.outbox) == 2


def test_a_cap_table_report_is_visible_to_its_sponsor_and_staff_only(api_client, book, staff):
    scope = StatementScope(
        "captable_report", period_parse("2025-09-30"), offering_id=book.offering.pk
    )
    report = statement_generate(scope=scope).statement
    path = f"/api/v1/statements/{report.pk}/pdf"
    sponsor_member = member_of(book.offering.sponsor)
    response = api_client.get(path, **bearer(sponsor_member))
    assert response.status_code == 200
    assert "Cap-table report" in pdf_text(b"".join(response.streaming_content))
    listed = api_client.get("/api/v1/statements", **bearer(sponsor_member)).json()
    assert [s["id"] for s in listed["items"]] == [report.pk]
    assert api_client.get(path, **bearer(staff)).status_code == 200
    # another sponsor's member and an investor of the offering get a 404
    other_sponsor = member_of(approved_sponsor(name="Other Realty"))
    assert api_client.get(path, **bearer(other_sponsor)).status_code == 404
    assert api_client.get(path, **bearer(book.alice.user)).status_code == 404
