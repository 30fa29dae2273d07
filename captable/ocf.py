"""Open Cap Format (OCF 1.x) export of an offering's cap table, built from the ledger, and its
validation against the official OCF JSON schemas (folder `settings.OCF_SCHEMA_DIR`).

Mapping, ledger → OCF (one package per offering: Manifest, Stakeholders, StockClasses,
Transactions; the issuer lives in the manifest):

- Issuer ← `offerings.Issuer`: legal name, country and state of formation. Brickbook does not
  record a formation date, which OCF requires: the date the issuer was registered on the
  platform stands in, and a comment on the object says so.
- Stakeholders ← every investor who held units of the offering at some point up to `as_of`:
  id `investor-<pk>`, legal name, INDIVIDUAL (individual and joint investors) or INSTITUTION
  (entities, trusts, IRAs), relationship INVESTOR. Names only: no tax ids, addresses or contact
  details. (The manifest's md5 checksums cover these files, as OCF requires; nothing of the
  export is stored or sealed in the ledger.)
- StockClasses ← one class per offering (`offering-<pk>-units`): COMMON (PREFERRED for preferred
  equity), the price per unit, authorized = the ledger's authorized units as of `as_of`.
- Transactions, in ledger order (effective time, entry id), dated in the offering's time zone:
  - each lot opened by an `issue` entry → TX_STOCK_ISSUANCE of security `lot-<lot pk>`: quantity
    in units, share price = the lot's cost per unit, cost basis = the lot's cost, the offering's
    securities-law exemption;
  - a `transfer` entry draws lots first in, first out; for each lot drawn → TX_STOCK_TRANSFER of
    that lot's current security, resulting in the buyer's new lot (`lot-<new lot pk>`); a
    partial draw leaves the seller's remainder in a balance security
    (`lot-<lot pk>-after-<entry pk>`). OCF creates every security with an issuance, so each
    resulting and balance security also gets a TX_STOCK_ISSUANCE dated the transfer, its cost
    carried over from the lot (the ledger's transfers carry cost basis, not a sale price);
  - a `redeem` entry → TX_STOCK_REPURCHASE per lot drawn, at the redemption's price per unit
    (rounded to OCF's 10 decimal places if it must be; the exact total is in
    `consideration_text`), with a balance security for a partial draw, as for transfers.
- Reversals: an entry reversed by `as_of` and its reversal are both left out. A reversal
  corrects a mistake, so the corrected history is the one in force, and OCF has no object
  that undoes a transfer or a repurchase (TX_STOCK_RETRACTION voids an issuance wholesale and
  says nothing of transfers). The ledger keeps both entries for audit. An entry reversed only
  after `as_of` is exported as it stood then.

Postcondition, checked on every build: the outstanding securities (those no later transfer or
repurchase consumed) sum, per stakeholder, to `captable_as_of` — the build fails otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Sum
from django.utils import timezone

# No stubs for jsonschema in the lock file (types-jsonschema is not a dependency).
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from captable.models import AccountKind, EntryKind, Posting, units_asset
from captable.selectors import captable_as_of
from common.money import currency_exponent, format_minor_units, round_minor_units
from investors.models import Investor, InvestorKind
from offerings.exemptions import Exemption
from offerings.models import Offering, SecurityType
from offerings.quantities import format_units

MANIFEST_FILE = "Manifest.ocf.json"
STAKEHOLDERS_FILE = "Stakeholders.ocf.json"
STOCK_CLASSES_FILE = "StockClasses.ocf.json"
TRANSACTIONS_FILE = "Transactions.ocf.json"

# The manifest's lists of files, and the file type each list holds.
MANIFEST_FILE_LISTS: Mapping[str, str] = {
    "stock_plans_files": "OCF_STOCK_PLANS_FILE",
    "stock_legend_templates_files": "OCF_STOCK_LEGEND_TEMPLATES_FILE",
    "stock_classes_files": "OCF_STOCK_CLASSES_FILE",
    "vesting_terms_files": "OCF_VESTING_TERMS_FILE",
    "valuations_files": "OCF_VALUATIONS_FILE",
    "transactions_files": "OCF_TRANSACTIONS_FILE",
    "stakeholders_files": "OCF_STAKEHOLDERS_FILE",
    "financings_files": "OCF_FINANCINGS_FILE",
    "documents_files": "OCF_DOCUMENTS_FILE",
}

# OCF's Numeric type allows at most 10 decimal places.
OCF_DECIMAL_PLACES = 10
# Brickbook does not record voting rights (the operating agreement defines them); claiming
# none is safer than claiming one vote a unit.
VOTES_PER_UNIT = "0"

EXEMPTION_TEXT: Mapping[str, tuple[str, str]] = {
    Exemption.REG_CF: ("Regulation Crowdfunding, Securities Act section 4(a)(6)", "US"),
    Exemption.REG_D_506B: ("Regulation D, Rule 506(b)", "US"),
    Exemption.REG_D_506C: ("Regulation D, Rule 506(c)", "US"),
    Exemption.REG_A_TIER2: ("Regulation A, Tier 2", "US"),
    Exemption.EU_ECSP: (
        "Regulation (EU) 2020/1503 (European crowdfunding service providers)",
        "EU",
    ),
}

INSTITUTION_KINDS = (InvestorKind.ENTITY, InvestorKind.TRUST, InvestorKind.IRA)

OcfObject = dict[str, Any]


class OcfSchemaMissing(ImproperlyConfigured):
    """The OCF schema folder is missing or holds no usable schema."""


class OcfExportError(Exception):
    """The ledger holds something this export cannot represent faithfully; nothing written."""


class OcfInvalid(Exception):
    """Files that do not validate against the OCF schemas: {file name: [problems]}."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = dict(problems)
        lines = [f"{name}: {problem}" for name, items in problems.items() for problem in items]
        super().__init__("OCF validation failed:\n" + "\n".join(lines))


# --- schemas and validation -----------------------------------------------------------------


@dataclass(frozen=True)
class OcfSchemas:
    directory: Path
    registry: Registry[Any]
    file_schema_ids: Mapping[str, str]  # file_type → $id of the file's schema
    object_schema_ids: Mapping[str, str]  # object_type → $id of the object's schema
    ocf_version: str


def ocf_schemas(directory: Path | str | None = None) -> OcfSchemas:
    """Every schema under the folder (default `settings.OCF_SCHEMA_DIR`) in one registry keyed
    by each schema's `$id`, so every `$ref` resolves offline. Loaded once per folder."""
    path = Path(directory if directory is not None else settings.OCF_SCHEMA_DIR)
    if not path.is_dir():
        raise OcfSchemaMissing(
            f"The OCF schema folder {path} does not exist. Set OCF_SCHEMA_DIR to the `schema` "
            "folder of the Open Cap Format repository (by default the copy vendored in "
            "captable/ocf_spec/schema)."
        )
    return _schemas_load(str(path.resolve()))


@lru_cache(maxsize=4)
def _schemas_load(directory: str) -> OcfSchemas:
    resources: list[tuple[str, Resource[Any]]] = []
    file_schema_ids: dict[str, str] = {}
    object_schema_ids: dict[str, str] = {}
    for path in sorted(Path(directory).rglob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        schema_id = contents.get("$id") if isinstance(contents, dict) else None
        if not schema_id:
            raise OcfSchemaMissing(f"{path} has no $id: not an OCF schema folder?")
        resources.append((schema_id, Resource.from_contents(contents, DRAFT7)))
        properties = contents.get("properties", {})
        file_type = properties.get("file_type", {}).get("const")
        if file_type:
            file_schema_ids[file_type] = schema_id
        object_type = properties.get("object_type", {}).get("const")
        if object_type:
            object_schema_ids[object_type] = schema_id
    if "OCF_MANIFEST_FILE" not in file_schema_ids:
        raise OcfSchemaMissing(f"No OCF manifest schema under {directory}.")
    registry: Registry[Any] = Registry().with_resources(resources)
    manifest = registry.contents(file_schema_ids["OCF_MANIFEST_FILE"])
    return OcfSchemas(
        directory=Path(directory),
        registry=registry.crawl(),
        file_schema_ids=file_schema_ids,
        object_schema_ids=object_schema_ids,
        ocf_version=str(manifest["properties"]["ocf_version"]["const"]),
    )


def ocf_document_errors(document: Any, *, schemas: OcfSchemas | None = None) -> list[str]:
    """Problems of one OCF file's content against the schema its `file_type` names (the
    validator class follows the schema's `$schema`: Draft 7 for OCF 1.x); [] when valid."""
    schemas = schemas or ocf_schemas()
    file_type = document.get("file_type") if isinstance(document, dict) else None
    schema_id = schemas.file_schema_ids.get(file_type) if isinstance(file_type, str) else None
    if schema_id is None:
        return [f"(root): unknown or missing file_type {file_type!r}"]
    schema = schemas.registry.contents(schema_id)
    validator_class = validator_for(schema, default=Draft7Validator)
    validator = validator_class(
        schema, registry=schemas.registry, format_checker=validator_class.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
    return [_describe(detail) for error in errors for detail in _narrowed(error, schemas)]


def _narrowed(error: ValidationError, schemas: OcfSchemas) -> list[ValidationError]:
    """A transaction that matches none of the file's `oneOf` branches: report the errors of
    the branch its own `object_type` names, not "is not valid under any of the schemas"."""
    instance = error.instance
    if error.validator != "oneOf" or not isinstance(instance, dict):
        return [error]
    wanted = schemas.object_schema_ids.get(str(instance.get("object_type")))
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    index = next((i for i, b in enumerate(branches) if b.get("$ref") == wanted), None)
    narrowed = [
        sub
        for sub in error.context or []
        if index is not None and sub.relative_schema_path and sub.relative_schema_path[0] == index
    ]
    return narrowed or [error]


def _describe(error: ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def ocf_directory_errors(
    directory: Path | str, *, schemas: OcfSchemas | None = None
) -> dict[str, list[str]]:
    """Validate a package folder: the manifest, then every file it lists (present, inside the
    folder, md5 as declared, of the declared type, valid). {file: [problems]}; {} when valid."""
    schemas = schemas or ocf_schemas()
    root = Path(directory).resolve()
    problems: dict[str, list[str]] = defaultdict(list)
    manifest = _read_json(root / MANIFEST_FILE, problems[MANIFEST_FILE])
    if manifest is not None:
        problems[MANIFEST_FILE] += ocf_document_errors(manifest, schemas=schemas)
        for reference, file_type in _listed_files(manifest):
            path = (root / str(reference.get("filepath", ""))).resolve()
            if root not in path.parents:
                problems[MANIFEST_FILE].append(f"{reference.get('filepath')!r} is outside")
                continue
            name = path.relative_to(root).as_posix()
            document = _read_json(path, problems[name], md5=reference.get("md5"))
            if document is None:
                continue
            if isinstance(document, dict) and document.get("file_type") != file_type:
                problems[name].append(f"(root): listed as {file_type} in the manifest")
            problems[name] += ocf_document_errors(document, schemas=schemas)
    return {name: found for name, found in problems.items() if found}


def _listed_files(manifest: Any) -> Iterable[tuple[Mapping[str, Any], str]]:
    if not isinstance(manifest, dict):
        return
    for key, file_type in MANIFEST_FILE_LISTS.items():
        listed = manifest.get(key)
        for reference in listed if isinstance(listed, list) else []:
            if isinstance(reference, dict):
                yield reference, file_type


def _read_json(path: Path, problems: list[str], *, md5: Any = None) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as error:
        problems.append(f"cannot be read: {error.strerror or error}")
        return None
    if md5 is not None and md5_of(raw) != md5:
        problems.append("md5 differs from the manifest's")
    try:
        return json.loads(raw)
    except ValueError as error:
        problems.append(f"not JSON: {error}")
        return None


def md5_of(content: bytes) -> str:
    # A checksum OCF's manifest requires, not a security measure.
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


# --- building the package from the ledger -----------------------------------------------------


@dataclass(frozen=True)
class OcfPackage:
    """File name → serialized bytes (what is written), and the documents they encode."""

    contents: dict[str, bytes]
    documents: dict[str, OcfObject]


def ocf_serialize(document: OcfObject) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class _Security:
    security_id: str
    investor_id: int
    quanta: int
    cost_minor: int


@dataclass
class _Replay:
    """Replays the offering's holding postings into OCF transactions (see the docstring)."""

    offering: Offering
    zone: ZoneInfo
    transactions: list[OcfObject] = field(default_factory=list)
    # ledger lot → the outstanding security holding what is left of it
    by_lot: dict[int, _Security] = field(default_factory=dict)
    holder_ids: set[int] = field(default_factory=set)

    @property
    def stock_class_id(self) -> str:
        return f"offering-{self.offering.pk}-units"

    def units(self, quanta: int) -> str:
        return format_units(quanta, self.offering.quanta_per_unit)

    def money(self, amount_minor: int) -> OcfObject:
        currency = self.offering.currency
        return {"amount": format_minor_units(amount_minor, currency), "currency": currency}

    def per_unit(self, total_minor: int, quanta: int) -> tuple[OcfObject, bool]:
        """Price of one unit when `quanta` cost `total_minor`, and whether it is exact."""
        currency = self.offering.currency
        minor = Fraction(total_minor * self.offering.quanta_per_unit, quanta)
        if minor.denominator == 1:
            return self.money(minor.numerator), True
        scaled = minor * 10 ** (OCF_DECIMAL_PLACES - currency_exponent(currency))
        exact = scaled.denominator == 1
        rounded = Decimal(round_minor_units(scaled)).scaleb(-OCF_DECIMAL_PLACES)
        return {"amount": f"{rounded.normalize():f}", "currency": currency}, exact

    def date_of(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).date().isoformat()

    def issuance(
        self,
        security: _Security,
        *,
        date: str,
        exemptions: list[OcfObject],
        consideration_text: str = "",
    ) -> OcfObject:
        self.holder_ids.add(security.investor_id)
        share_price, exact = self.per_unit(security.cost_minor, security.quanta)
        issuance: OcfObject = {
            "object_type": "TX_STOCK_ISSUANCE",
            "id": f"issuance-{security.security_id}",
            "security_id": security.security_id,
            "custom_id": f"O{self.offering.pk}-{security.security_id}",
            "date": date,
            "stakeholder_id": f"investor-{security.investor_id}",
            "stock_class_id": self.stock_class_id,
            "share_price": share_price,
            "quantity": self.units(security.quanta),
            "cost_basis": self.money(security.cost_minor),
            "security_law_exemptions": exemptions,
            "stock_legend_ids": [],
        }
        if consideration_text:
            issuance["consideration_text"] = consideration_text
        if not exact:
            issuance["comments"] = [
                f"share_price rounded to {OCF_DECIMAL_PLACES} places; cost_basis is exact"
            ]
        return issuance

    def consume(
        self, lot_id: int, quanta: int, cost_minor: int, *, entry_id: int
    ) -> tuple[_Security, _Security | None]:
        """Draw from a lot's outstanding security; the remainder becomes a balance security."""
        source = self.by_lot.get(lot_id)
        if source is None or quanta > source.quanta:
            raise OcfExportError(
                f"Ledger entry {entry_id} draws {quanta} quanta from lot {lot_id}, which holds "
                f"{source.quanta if source else 'nothing'} in the export's replay."
            )
        del self.by_lot[lot_id]
        if quanta == source.quanta:
            return source, None
        balance = _Security(
            f"lot-{lot_id}-after-{entry_id}",
            source.investor_id,
            source.quanta - quanta,
            source.cost_minor - cost_minor,
        )
        self.by_lot[lot_id] = balance
        return source, balance

    def issue(self, entry_id: int, date: str, legs: list[dict[str, Any]]) -> None:
        exemption = EXEMPTION_TEXT.get(self.offering.exemption)
        exemptions = (
            [{"description": exemption[0], "jurisdiction": exemption[1]}] if exemption else []
        )
        for leg in legs:
            if leg["amount"] <= 0 or leg["lot__acquired_by_id"] != entry_id:
                raise OcfExportError(f"Issue entry {entry_id} has an unexpected holding leg.")
            security = _Security(
                f"lot-{leg['lot_id']}",
                leg["account__investor_id"],
                leg["amount"],
                leg["cost_minor"],
            )
            self.by_lot[leg["lot_id"]] = security
            self.transactions.append(self.issuance(security, date=date, exemptions=exemptions))

    def transfer(self, entry_id: int, date: str, legs: list[dict[str, Any]]) -> None:
        opened = {leg["lot__origin_lot_id"]: leg for leg in legs if leg["amount"] > 0}
        drawn = _first_in_first_out([leg for leg in legs if leg["amount"] < 0])
        if len(opened) != len(drawn) or len(opened) != sum(leg["amount"] > 0 for leg in legs):
            raise OcfExportError(f"Transfer entry {entry_id} does not pair its lots one to one.")
        for leg in drawn:
            new = opened.get(leg["lot_id"])
            if new is None or new["amount"] != -leg["amount"]:
                raise OcfExportError(f"Transfer entry {entry_id}: lot {leg['lot_id']} unpaired.")
            source, balance = self.consume(
                leg["lot_id"], -leg["amount"], -leg["cost_minor"], entry_id=entry_id
            )
            received = _Security(
                f"lot-{new['lot_id']}",
                new["account__investor_id"],
                new["amount"],
                new["cost_minor"],
            )
            self.by_lot[new["lot_id"]] = received
            text = (
                f"Transfer from investor-{source.investor_id} to investor-{received.investor_id} "
                f"(ledger entry {entry_id}); cost basis carried over"
            )
            transfer: OcfObject = {
                "object_type": "TX_STOCK_TRANSFER",
                "id": f"transfer-{entry_id}-lot-{leg['lot_id']}",
                "security_id": source.security_id,
                "date": date,
                "quantity": self.units(received.quanta),
                "resulting_security_ids": [received.security_id],
                "consideration_text": text,
            }
            self.transactions.append(transfer)
            self.transactions.append(
                self.issuance(received, date=date, exemptions=[], consideration_text=text)
            )
            self._balance(
                transfer, balance, date=date, text=f"Remainder after {text[0].lower()}{text[1:]}"
            )

    def redeem(self, entry_id: int, date: str, legs: list[dict[str, Any]], price: int) -> None:
        quanta_total = -sum(leg["amount"] for leg in legs)
        if quanta_total <= 0 or any(leg["amount"] >= 0 for leg in legs):
            raise OcfExportError(f"Redeem entry {entry_id} has an unexpected holding leg.")
        unit_price, _ = self.per_unit(price, quanta_total)
        text = (
            f"Redeemed by the issuer: {self.units(quanta_total)} units for "
            f"{format_minor_units(price, self.offering.currency)} {self.offering.currency} in "
            f"total (ledger entry {entry_id})"
        )
        for leg in _first_in_first_out(legs):
            source, balance = self.consume(
                leg["lot_id"], -leg["amount"], -leg["cost_minor"], entry_id=entry_id
            )
            repurchase: OcfObject = {
                "object_type": "TX_STOCK_REPURCHASE",
                "id": f"repurchase-{entry_id}-lot-{leg['lot_id']}",
                "security_id": source.security_id,
                "date": date,
                "price": unit_price,
                "quantity": self.units(-leg["amount"]),
                "consideration_text": text,
            }
            self.transactions.append(repurchase)
            self._balance(
                repurchase,
                balance,
                date=date,
                text=f"Remainder after ledger entry {entry_id} (redemption)",
            )

    def _balance(
        self, transaction: OcfObject, balance: _Security | None, *, date: str, text: str
    ) -> None:
        if balance is None:
            return
        transaction["balance_security_id"] = balance.security_id
        self.transactions.append(
            self.issuance(balance, date=date, exemptions=[], consideration_text=text)
        )


def _first_in_first_out(legs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Legs drawing lots, in the order the ledger drew them (oldest issue first)."""
    return sorted(legs, key=lambda leg: (leg["lot__issued_at"], leg["lot_id"]))


_HOLDING_LEG_FIELDS = (
    "entry_id",
    "entry__kind",
    "entry__effective_at",
    "entry__reverses_id",
    "account__investor_id",
    "lot_id",
    "lot__origin_lot_id",
    "lot__acquired_by_id",
    "lot__issued_at",
    "amount",
    "cost_minor",
)


def _ledger_entries(
    offering: Offering, moment: datetime
) -> tuple[list[list[dict[str, Any]]], dict[int, int]]:
    """The holding legs of the offering's entries up to `moment`, grouped per entry in ledger
    order, without reversed entries and their reversals; and each redemption's cash price."""
    asset = units_asset(offering.pk)
    legs = list(
        Posting.objects.filter(
            asset=asset, account__kind=AccountKind.HOLDING, effective_at__lte=moment
        )
        .order_by("effective_at", "entry_id", "pk")
        .values(*_HOLDING_LEG_FIELDS)
    )
    reversals = {leg["entry_id"] for leg in legs if leg["entry__kind"] == EntryKind.REVERSAL}
    reversed_ids = {leg["entry__reverses_id"] for leg in legs if leg["entry_id"] in reversals}
    grouped: dict[int, list[dict[str, Any]]] = {}
    for leg in legs:
        if leg["entry_id"] not in reversals and leg["entry_id"] not in reversed_ids:
            grouped.setdefault(leg["entry_id"], []).append(leg)
    redeemed = Posting.objects.filter(asset=asset, entry__kind=EntryKind.REDEEM).values("entry_id")
    prices = dict(
        Posting.objects.filter(entry_id__in=redeemed, account__kind=AccountKind.CASH, amount__gt=0)
        .values("entry_id")
        .annotate(total=Sum("amount"))
        .values_list("entry_id", "total")
    )
    return list(grouped.values()), {int(k): int(v) for k, v in prices.items()}


def _replay(offering: Offering, moment: datetime) -> _Replay:
    replay = _Replay(offering=offering, zone=ZoneInfo(offering.time_zone))
    entries, prices = _ledger_entries(offering, moment)
    for legs in entries:
        entry_id, kind = legs[0]["entry_id"], legs[0]["entry__kind"]
        date = replay.date_of(legs[0]["entry__effective_at"])
        if kind == EntryKind.ISSUE:
            replay.issue(entry_id, date, legs)
        elif kind == EntryKind.TRANSFER:
            replay.transfer(entry_id, date, legs)
        elif kind == EntryKind.REDEEM:
            replay.redeem(entry_id, date, legs, prices.get(entry_id, 0))
        else:
            raise OcfExportError(f"Ledger entry {entry_id} ({kind}) has no OCF mapping.")
    return replay


def _check_against_captable(replay: _Replay, offering: Offering, moment: datetime) -> int:
    """Outstanding securities per investor = the as-of cap table. Returns authorized quanta."""
    table = captable_as_of(offering=offering, as_of=moment)
    held: dict[int, int] = defaultdict(int)
    for security in replay.by_lot.values():
        held[security.investor_id] += security.quanta
    expected = {row.investor_id: row.quanta for row in table.rows}
    if {k: v for k, v in held.items() if v} != expected:
        raise OcfExportError(
            f"The OCF replay of offering {offering.pk} gives {dict(held)}, the ledger "
            f"{expected}; nothing exported."
        )
    return table.authorized_quanta


def ocf_package_build(
    *, offering: Offering, as_of: datetime | None = None, generated_at: datetime | None = None
) -> OcfPackage:
    """The offering's cap table as of `as_of` (default now) as an OCF package, in memory."""
    moment = as_of or timezone.now()
    schemas = ocf_schemas()
    replay = _replay(offering, moment)
    authorized_quanta = _check_against_captable(replay, offering, moment)
    documents: dict[str, OcfObject] = {
        STAKEHOLDERS_FILE: {
            "file_type": "OCF_STAKEHOLDERS_FILE",
            "items": _stakeholders(replay.holder_ids),
        },
        STOCK_CLASSES_FILE: {
            "file_type": "OCF_STOCK_CLASSES_FILE",
            "items": [_stock_class(replay, authorized_quanta, moment)],
        },
        TRANSACTIONS_FILE: {"file_type": "OCF_TRANSACTIONS_FILE", "items": replay.transactions},
    }
    contents = {name: ocf_serialize(document) for name, document in documents.items()}

    def listed(name: str) -> list[OcfObject]:
        return [{"filepath": f"./{name}", "md5": md5_of(contents[name])}]

    manifest: OcfObject = {
        "ocf_version": schemas.ocf_version,
        "file_type": "OCF_MANIFEST_FILE",
        "issuer": _issuer(offering),
        "as_of": replay.date_of(moment),
        "generated_at": (generated_at or timezone.now()).isoformat(),
        "stock_plans_files": [],
        "stock_legend_templates_files": [],
        "stock_classes_files": listed(STOCK_CLASSES_FILE),
        "vesting_terms_files": [],
        "valuations_files": [],
        "transactions_files": listed(TRANSACTIONS_FILE),
        "stakeholders_files": listed(STAKEHOLDERS_FILE),
        "comments": [
            f"Cap table of offering {offering.pk} ({offering.title}) as of "
            f"{moment.astimezone(ZoneInfo('UTC')).isoformat()}, exported by Brickbook from "
            "its ledger.",
            f"Dates are in the offering's time zone, {offering.time_zone}.",
        ],
    }
    return OcfPackage(
        contents={MANIFEST_FILE: ocf_serialize(manifest), **contents},
        documents={MANIFEST_FILE: manifest, **documents},
    )


def _issuer(offering: Offering) -> OcfObject:
    issuer = offering.issuer
    issuer_object: OcfObject = {
        "object_type": "ISSUER",
        "id": f"issuer-{issuer.pk}",
        "legal_name": issuer.legal_name,
        "formation_date": issuer.created_at.date().isoformat(),
        "country_of_formation": issuer.jurisdiction_country.upper(),
        "comments": [
            "formation_date is the date the issuer was registered on Brickbook; its formation "
            "date is not recorded."
        ],
    }
    region = issuer.jurisdiction_region.strip()
    if region.isalnum() and region.isupper() and len(region) <= 3:
        issuer_object["country_subdivision_of_formation"] = region
    elif region:
        issuer_object["country_subdivision_name_of_formation"] = region
    return issuer_object


def _stakeholders(investor_ids: set[int]) -> list[OcfObject]:
    investors = Investor.objects.filter(pk__in=investor_ids).order_by("pk")
    return [
        {
            "object_type": "STAKEHOLDER",
            "id": f"investor-{investor.pk}",
            "name": {"legal_name": investor.legal_name},
            "stakeholder_type": (
                "INSTITUTION" if investor.kind in INSTITUTION_KINDS else "INDIVIDUAL"
            ),
            "current_relationships": ["INVESTOR"],
        }
        for investor in investors.only("pk", "legal_name", "kind")
    ]


def _stock_class(replay: _Replay, authorized_quanta: int, moment: datetime) -> OcfObject:
    offering = replay.offering
    preferred = offering.security_type == SecurityType.PREFERRED_EQUITY
    return {
        "object_type": "STOCK_CLASS",
        "id": replay.stock_class_id,
        "name": f"{offering.title} units",
        "class_type": "PREFERRED" if preferred else "COMMON",
        "default_id_prefix": f"O{offering.pk}-",
        "initial_shares_authorized": replay.units(authorized_quanta),
        "votes_per_share": VOTES_PER_UNIT,
        "price_per_share": replay.money(offering.price_per_unit_minor),
        "seniority": "1",
        "comments": [
            f"Units of offering {offering.pk} ({offering.get_security_type_display()}, "
            f"{offering.get_exemption_display()}); {offering.quanta_per_unit} quanta per unit.",
            "initial_shares_authorized: the ledger's authorized units as of "
            f"{replay.date_of(moment)}.",
            "votes_per_share: voting rights are not recorded by Brickbook; see the offering "
            "documents.",
        ],
    }


# --- writing ------------------------------------------------------------------------------


def ocf_export(
    *, offering: Offering, directory: Path | str, as_of: datetime | None = None
) -> OcfPackage:
    """Build, write into a temporary sibling folder, validate what was written, then move it
    to `directory` (which must not exist, or be empty). On any failure nothing is left at
    `directory`; `OcfInvalid` carries the validation problems."""
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OcfExportError(f"{target} already exists and is not an empty folder.")
    package = ocf_package_build(offering=offering, as_of=as_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, content in package.contents.items():
            (staging / name).write_bytes(content)
        problems = ocf_directory_errors(staging)
        if problems:
            raise OcfInvalid(problems)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return package
