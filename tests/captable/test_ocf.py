"""OCF export: a demo-like offering's package validates against the official schemas, its
numbers equal the as-of cap table, and the validator does reject broken files."""

import copy
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from captable import ledger, ocf
from captable.selectors import captable_as_of
from investors.models import Investor
from offerings.models import Offering
from tests.captable.factories import investors, issue, key, offering_with_units, transfer

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

SAMPLES = Path(settings.OCF_SCHEMA_DIR).parent / "samples"


@pytest.fixture
def book():
    """Demo-like: 10,000 units at $100; alice buys twice, bob once; alice sells carol 350
    (a whole lot and part of another); bob's sale to carol is reversed; the issuer redeems
    40 of bob's units at $110 from its operating account."""
    offering = offering_with_units(10_000)
    alice, bob, carol = investors(3)
    first = issue(offering, alice, 300, cost_minor=30_000_00)
    issue(offering, bob, 100, cost_minor=10_000_00)
    issue(offering, alice, 200, cost_minor=20_000_00)
    transfer(offering, alice, carol, 350)
    mistake = transfer(offering, bob, carol, 10)
    ledger.entry_reverse(entry_id=mistake.pk, idempotency_key=key(), reason="wrong buyer")
    ledger.cash_move(
        source=ledger.external_account("USD"),
        destination=ledger.issuer_account(offering.issuer, "operating", "USD"),
        amount_minor=100_000_00,
        idempotency_key=key(),
    )
    redemption = ledger.units_redeem(
        offering=offering, investor=bob, quanta=40, price_minor=40 * 110_00, idempotency_key=key()
    )
    return offering, (alice, bob, carol), first, mistake, redemption


def export(offering, directory: Path, *args: str) -> dict[str, dict[str, Any]]:
    call_command("export_ocf", str(offering.pk), str(directory), *args, stdout=None)
    return {path.name: json.loads(path.read_text()) for path in directory.iterdir()}


def items(
    files: dict[str, dict[str, Any]], name: str, object_type: str | None = None
) -> list[dict[str, Any]]:
    return [
        item
        for item in files[name]["items"]
        if object_type is None or item["object_type"] == object_type
    ]


def outstanding_by_stakeholder(files: dict[str, dict[str, Any]]) -> dict[str, Decimal]:
    transactions = items(files, ocf.TRANSACTIONS_FILE)
    consumed = {t["security_id"] for t in transactions if t["object_type"] != "TX_STOCK_ISSUANCE"}
    held: dict[str, Decimal] = defaultdict(Decimal)
    for issuance in transactions:
        is_issuance = issuance["object_type"] == "TX_STOCK_ISSUANCE"
        if is_issuance and issuance["security_id"] not in consumed:
            held[issuance["stakeholder_id"]] += Decimal(issuance["quantity"])
    return dict(held)


def test_export_of_a_demo_offering_validates_file_by_file(book, tmp_path):
    offering, *_ = book
    target = tmp_path / "ocf"
    files = export(offering, target)
    assert sorted(files) == sorted(
        [ocf.MANIFEST_FILE, ocf.STAKEHOLDERS_FILE, ocf.STOCK_CLASSES_FILE, ocf.TRANSACTIONS_FILE]
    )
    for name, document in files.items():
        assert ocf.ocf_document_errors(document) == [], name
    assert ocf.ocf_directory_errors(target) == {}
    manifest = files[ocf.MANIFEST_FILE]
    assert manifest["issuer"]["legal_name"] == offering.issuer.legal_name
    assert manifest["issuer"]["country_subdivision_of_formation"] == "DE"
    assert [f["filepath"] for f in manifest["transactions_files"]] == ["./Transactions.ocf.json"]


def test_export_totals_equal_the_as_of_cap_table(book, tmp_path):
    offering, (alice, bob, carol), _, mistake, redemption = book
    files = export(offering, tmp_path / "ocf")
    table = captable_as_of(offering=offering)

    # outstanding securities = holdings, per stakeholder and in total
    held = outstanding_by_stakeholder(files)
    assert held == {f"investor-{row.investor_id}": Decimal(row.quanta) for row in table.rows}
    assert sum(held.values()) == table.issued_quanta == 560
    assert held == {
        f"investor-{alice.pk}": 150,
        f"investor-{bob.pk}": 60,
        f"investor-{carol.pk}": 350,
    }
    (stock_class,) = items(files, ocf.STOCK_CLASSES_FILE)
    assert Decimal(stock_class["initial_shares_authorized"]) == table.authorized_quanta == 10_000
    assert stock_class["price_per_share"] == {"amount": "100.00", "currency": "USD"}

    # three issue entries, three primary issuances (the ones with an exemption)
    primary = [
        i
        for i in items(files, ocf.TRANSACTIONS_FILE, "TX_STOCK_ISSUANCE")
        if i["security_law_exemptions"]
    ]
    assert [(i["stakeholder_id"], i["quantity"]) for i in primary] == [
        (f"investor-{alice.pk}", "300"),
        (f"investor-{bob.pk}", "100"),
        (f"investor-{alice.pk}", "200"),
    ]
    assert primary[0]["share_price"] == {"amount": "100.00", "currency": "USD"}
    assert primary[0]["cost_basis"] == {"amount": "30000.00", "currency": "USD"}

    # alice → carol 350: the whole first lot, then 50 of the second with a balance of 150
    transfers = items(files, ocf.TRANSACTIONS_FILE, "TX_STOCK_TRANSFER")
    assert [(t["security_id"], t["quantity"], "balance_security_id" in t) for t in transfers] == [
        (primary[0]["security_id"], "300", False),
        (primary[2]["security_id"], "50", True),
    ]
    # the reversed transfer and its reversal are not exported
    assert not any(f"-{mistake.pk}-" in t["id"] for t in items(files, ocf.TRANSACTIONS_FILE))

    # the redemption: 40 units at $110.00 each, bob's lot keeps a balance of 60
    (repurchase,) = items(files, ocf.TRANSACTIONS_FILE, "TX_STOCK_REPURCHASE")
    assert repurchase["security_id"] == primary[1]["security_id"]
    assert (repurchase["quantity"], repurchase["price"]) == (
        "40",
        {"amount": "110.00", "currency": "USD"},
    )
    assert repurchase["id"] == f"repurchase-{redemption.pk}-lot-{repurchase['security_id'][4:]}"
    assert "4400.00 USD" in repurchase["consideration_text"]

    # every holder ever, named; nobody else
    stakeholders = items(files, ocf.STAKEHOLDERS_FILE)
    assert {(s["id"], s["name"]["legal_name"]) for s in stakeholders} == {
        (f"investor-{i.pk}", i.legal_name) for i in (alice, bob, carol)
    }


def test_every_security_consumed_was_issued_first(book, tmp_path):
    offering, *_ = book
    transactions = items(export(offering, tmp_path / "ocf"), ocf.TRANSACTIONS_FILE)
    issued: set[str] = set()
    consumed: set[str] = set()
    for transaction in transactions:
        if transaction["object_type"] == "TX_STOCK_ISSUANCE":
            assert transaction["security_id"] not in issued
            issued.add(transaction["security_id"])
            continue
        assert transaction["security_id"] in issued - consumed
        consumed.add(transaction["security_id"])
        created = transaction.get("resulting_security_ids", [])
        if "balance_security_id" in transaction:
            created = [*created, transaction["balance_security_id"]]
        later = {t["security_id"] for t in transactions[transactions.index(transaction) :]}
        assert set(created) <= later


def test_export_as_of_an_earlier_instant(book, tmp_path):
    offering, (alice, *_), first, *_ = book
    files = export(offering, tmp_path / "ocf", "--as-of", first.effective_at.isoformat())
    assert outstanding_by_stakeholder(files) == {f"investor-{alice.pk}": 300}
    assert len(items(files, ocf.TRANSACTIONS_FILE)) == 1
    assert ocf.ocf_directory_errors(tmp_path / "ocf") == {}


def test_a_stakeholder_without_required_fields_fails_validation(book):
    offering, *_ = book
    package = ocf.ocf_package_build(offering=offering)
    broken = copy.deepcopy(package.documents[ocf.STAKEHOLDERS_FILE])
    del broken["items"][0]["name"]
    del broken["items"][1]["stakeholder_type"]

    errors = ocf.ocf_document_errors(broken)

    assert "items/0: 'name' is a required property" in errors
    assert "items/1: 'stakeholder_type' is a required property" in errors


def test_a_broken_transaction_is_reported_against_its_own_object_type(book):
    offering, *_ = book
    document = copy.deepcopy(
        ocf.ocf_package_build(offering=offering).documents["Transactions.ocf.json"]
    )
    document["items"][0]["quantity"] = 300  # a JSON number, not OCF's fixed-point string
    del document["items"][1]["share_price"]
    document["items"][2]["date"] = "2026-02-30"

    errors = ocf.ocf_document_errors(document)

    assert "items/0/quantity: 300 is not of type 'string'" in errors
    assert "items/1: 'share_price' is a required property" in errors
    assert any(error.startswith("items/2/date:") for error in errors)


def test_an_edited_file_fails_the_folder_check(book, tmp_path):
    offering, *_ = book
    target = tmp_path / "ocf"
    export(offering, target)
    stakeholders = target / ocf.STAKEHOLDERS_FILE
    document = json.loads(stakeholders.read_text())
    document["items"][0]["name"] = "A plain string"
    stakeholders.write_text(json.dumps(document))
    (target / ocf.TRANSACTIONS_FILE).unlink()

    problems = ocf.ocf_directory_errors(target)

    assert problems[ocf.STAKEHOLDERS_FILE][0] == "md5 differs from the manifest's"
    assert (
        "items/0/name: 'A plain string' is not of type 'object'" in problems[ocf.STAKEHOLDERS_FILE]
    )
    assert problems[ocf.TRANSACTIONS_FILE][0].startswith("cannot be read")


def test_an_invalid_package_is_never_written(book, tmp_path, monkeypatch):
    offering, *_ = book
    real_build = ocf.ocf_package_build

    def build_without_names(**kwargs):
        package = real_build(**kwargs)
        stakeholders = package.documents[ocf.STAKEHOLDERS_FILE]
        for stakeholder in stakeholders["items"]:
            del stakeholder["name"]
        package.contents[ocf.STAKEHOLDERS_FILE] = ocf.ocf_serialize(stakeholders)
        return package

    monkeypatch.setattr(ocf, "ocf_package_build", build_without_names)
    target = tmp_path / "ocf"
    with pytest.raises(CommandError) as error:
        call_command("export_ocf", str(offering.pk), str(target))
    assert "Stakeholders.ocf.json: md5 differs" in str(error.value)
    assert "Stakeholders.ocf.json: items/0: 'name' is a required property" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no target, no staging folder left behind


def test_export_refuses_a_non_empty_folder_and_accepts_an_empty_one(book, tmp_path):
    offering, *_ = book
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(CommandError, match="not an empty folder"):
        call_command("export_ocf", str(offering.pk), str(occupied))
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(export(offering, empty)) == 4


def test_a_missing_schema_folder_is_a_clear_error(book, tmp_path, settings):
    offering, *_ = book
    settings.OCF_SCHEMA_DIR = tmp_path / "nowhere"
    with pytest.raises(ocf.OcfSchemaMissing, match="OCF_SCHEMA_DIR"):
        ocf.ocf_schemas()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_ocf", str(offering.pk), str(tmp_path / "ocf"))
    assert not (tmp_path / "ocf").exists()


def test_the_official_samples_validate_except_the_known_bad_transactions():
    """The validator agrees with the OCF README: the samples are well formed, except seven
    transaction objects this commit's schemas do not accept."""
    for name in ("Manifest", "Stakeholders", "StockClasses", "StockLegends", "Valuations"):
        document = json.loads((SAMPLES / f"{name}.ocf.json").read_text())
        assert ocf.ocf_document_errors(document) == [], name
    transactions = json.loads((SAMPLES / "Transactions.ocf.json").read_text())
    errors = ocf.ocf_document_errors(transactions)
    failing = {int(error.split("/")[1].split(":")[0]) for error in errors}
    assert len(failing) == 7
    failing_types = {transactions["items"][index]["object_type"] for index in failing}
    assert not failing_types & {"TX_STOCK_ISSUANCE", "TX_STOCK_TRANSFER", "TX_STOCK_REPURCHASE"}


def test_fractional_units_inexact_prices_and_a_reversed_issue(tmp_path):
    """Thousandths of a unit; a lot whose cost per unit does not terminate; a reversed issue
    (neither it nor its reversal is exported, and its holder is no stakeholder)."""
    offering = offering_with_units(100_000, quanta_per_unit=1_000, min_investment_units=Decimal(1))
    alice, bob = investors(2)
    issue(offering, alice, 3_000, cost_minor=100_00)  # 3 units for $100: $33.33… a unit
    transfer(offering, alice, bob, 1_250)
    wrong = issue(offering, bob, 500, cost_minor=50_00)
    ledger.entry_reverse(entry_id=wrong.pk, idempotency_key=key(), reason="duplicate")

    files = export(offering, tmp_path / "ocf")

    assert ocf.ocf_directory_errors(tmp_path / "ocf") == {}
    first, *_ = items(files, ocf.TRANSACTIONS_FILE, "TX_STOCK_ISSUANCE")
    assert first["quantity"] == "3.000"
    assert first["share_price"] == {"amount": "33.3333333333", "currency": "USD"}
    assert first["cost_basis"] == {"amount": "100.00", "currency": "USD"}
    assert "rounded" in first["comments"][0]
    held = outstanding_by_stakeholder(files)
    assert held == {f"investor-{alice.pk}": Decimal("1.75"), f"investor-{bob.pk}": Decimal("1.25")}
    table = captable_as_of(offering=offering)
    assert {k: v * 1_000 for k, v in held.items()} == {
        f"investor-{row.investor_id}": row.quanta for row in table.rows
    }
    issued_ids = {
        i["security_id"] for i in items(files, ocf.TRANSACTIONS_FILE, "TX_STOCK_ISSUANCE")
    }
    wrong_lots = {f"lot-{pk}" for pk in wrong.lots_opened.values_list("pk", flat=True)}
    assert wrong_lots
    assert not wrong_lots & issued_ids
    assert len(items(files, ocf.TRANSACTIONS_FILE)) == 4  # issue, transfer, 2 issuances


def test_the_manage_py_demo_offering_exports_valid_ocf_before_and_after_trading(tmp_path):
    call_command("demo", stdout=io.StringIO())
    # every demo offering exports a valid package (the closed one with its issuances)
    for number, demo_offering in enumerate(Offering.objects.order_by("pk")):
        export(demo_offering, tmp_path / f"demo-{number}")
        assert ocf.ocf_directory_errors(tmp_path / f"demo-{number}") == {}
    offering = Offering.objects.get(slug__startswith="maple-court")
    first, second, third = Investor.objects.order_by("pk")[:3]

    # live, nothing on the ledger yet: an empty but valid package
    files = export(offering, tmp_path / "before")
    assert ocf.ocf_directory_errors(tmp_path / "before") == {}
    assert items(files, ocf.TRANSACTIONS_FILE) == []

    # then authorized, sold, traded and partly redeemed (thousandths of a unit)
    ledger.units_authorize(
        offering=offering, quanta=offering.units_authorized_quanta, idempotency_key=key()
    )
    issue(offering, first, 10_500, cost_minor=1_050_00)
    issue(offering, second, 2_000, cost_minor=200_00)
    transfer(offering, first, third, 2_250)
    ledger.cash_move(
        source=ledger.external_account(offering.currency),
        destination=ledger.issuer_account(offering.issuer, "operating", offering.currency),
        amount_minor=1_000_00,
        idempotency_key=key(),
    )
    ledger.units_redeem(
        offering=offering, investor=second, quanta=500, price_minor=55_00, idempotency_key=key()
    )
    files = export(offering, tmp_path / "after")

    assert ocf.ocf_directory_errors(tmp_path / "after") == {}
    table = captable_as_of(offering=offering)
    held = outstanding_by_stakeholder(files)
    assert {k: v * offering.quanta_per_unit for k, v in held.items()} == {
        f"investor-{row.investor_id}": row.quanta for row in table.rows
    }
    (stock_class,) = items(files, ocf.STOCK_CLASSES_FILE)
    assert stock_class["initial_shares_authorized"] == "40000.000"
