"""Writes to investor profiles. Each service is one transaction and records its decision.

Status changes are compare-and-swap updates (`filter(pk=…, status=old).update(…) == 1`), so two
concurrent decisions cannot both win; every KYC or accreditation change writes an
`InvestorDecision` row (who, when, from, to, why, rule version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from babel import Locale
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.auth import staff_required
from common.errors import Conflict, InvalidTransition, NotAllowed, NotFound, ValidationFailed
from common.models import User
from investors import knowledge_test
from investors.compliance import accredited_investor_test, ecsp_pack, reg_d_pack
from investors.models import (
    US_STATES,
    AccreditationEvidence,
    AccreditationStatus,
    DecisionSubject,
    EvidenceMethod,
    Investor,
    InvestorKind,
    KnowledgeTestAttempt,
    KycStatus,
    TaxForm,
)
from investors.selectors import investor_facts

# Two-letter codes Babel knows that are not ISO 3166-1 country codes.
_NOT_ISO_COUNTRIES = frozenset(
    {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "ZZ"}
)


@cache
def iso_country_codes() -> frozenset[str]:
    codes = {str(code) for code in Locale("en").territories}
    return frozenset(
        code
        for code in codes
        if len(code) == 2 and code.isalpha() and code not in _NOT_ISO_COUNTRIES
    )


def _check_residence(*, country: str, us_state: str) -> None:
    if country not in iso_country_codes():
        raise ValidationFailed(
            f"{country!r} is not an ISO 3166-1 alpha-2 country code (e.g. US, DE).",
            code="invalid_country",
        )
    if country == "US" and us_state not in US_STATES:
        raise ValidationFailed(
            "A US investor needs a valid two-letter US state (e.g. NY).", code="us_state_required"
        )
    if country != "US" and us_state:
        raise ValidationFailed(
            "us_state applies only when the country is US.", code="invalid_us_state"
        )


def _record_decision(
    *,
    investor: Investor,
    subject: str,
    from_status: str,
    to_status: str,
    reason: str,
    decided_by: User | None,
    rule_version: str = "",
) -> None:
    investor.decisions.create(
        subject=subject,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        decided_by=decided_by,
        rule_version=rule_version,
    )


# --- registration and profile ---------------------------------------------------------------


def investor_register(
    *,
    email: str,
    password: str,
    legal_name: str,
    kind: str = InvestorKind.INDIVIDUAL,
    country: str,
    us_state: str = "",
) -> Investor:
    """A new user (email login) and their investor profile, KYC pending."""
    email = email.strip().lower()
    country = country.strip().upper()
    us_state = us_state.strip().upper()
    legal_name = legal_name.strip()
    if not legal_name:
        raise ValidationFailed("legal_name must not be blank.", code="invalid_legal_name")
    _check_residence(country=country, us_state=us_state)
    candidate = User(username=email, email=email, first_name=legal_name)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as error:
        messages = [str(message) for message in error.messages]
        raise ValidationFailed(
            "Password too weak: " + " ".join(messages), code="weak_password", problems=messages
        ) from None
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise Conflict("An account with this email already exists.", code="email_taken")
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    username=email, email=email, password=password, first_name=legal_name
                )
        except IntegrityError:  # a concurrent registration won the race
            raise Conflict(
                "An account with this email already exists.", code="email_taken"
            ) from None
        investor = Investor.objects.create(
            user=user, kind=kind, legal_name=legal_name, country=country, us_state=us_state
        )
        _record_decision(
            investor=investor,
            subject=DecisionSubject.KYC,
            from_status="",
            to_status=KycStatus.PENDING,
            reason="Registered; identity review pending.",
            decided_by=None,
        )
    return investor


@dataclass(frozen=True)
class MoneyFigure:
    amount_minor: int
    currency: str


MONEY_FIELDS = {
    "income_year_minus_2": "income_year_minus_2_minor",
    "income_year_minus_1": "income_year_minus_1_minor",
    "income_current_year_expected": "income_current_year_expected_minor",
    "net_worth": "net_worth_minor",
    "entity_assets": "entity_assets_minor",
}
PLAIN_FIELDS = frozenset(
    {
        "legal_name",
        "kind",
        "country",
        "us_state",
        "is_joint_income",
        "financials_currency",
        "has_securities_license",
        "tax_form",
        "tax_id",
        "treaty_withholding_rate_basis_points",
    }
)
# Changing these after an approved KYC sends the profile back to review.
IDENTITY_FIELDS = frozenset({"legal_name", "kind", "country", "us_state", "tax_id"})
_TAX_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{2,38}[A-Za-z0-9]$")


def _apply_financials(investor: Investor, changes: Mapping[str, object]) -> None:
    currency = str(changes.get("financials_currency", investor.financials_currency))
    if currency != investor.financials_currency:
        stale = [
            name
            for name, column in MONEY_FIELDS.items()
            if getattr(investor, column) is not None and name not in changes
        ]
        if stale:
            raise ValidationFailed(
                f"Changing financials_currency to {currency} needs every figure restated in "
                f"{currency} (or cleared with null): {', '.join(stale)}.",
                code="financials_currency_change",
            )
    for name, column in MONEY_FIELDS.items():
        if name not in changes:
            continue
        figure = changes[name]
        if figure is None:
            setattr(investor, column, None)
            continue
        assert isinstance(figure, MoneyFigure)
        if figure.currency != currency:
            raise ValidationFailed(
                f"{name} is in {figure.currency} but financials are in {currency}; "
                "no conversion is done.",
                code="financials_currency_mismatch",
            )
        if figure.amount_minor < 0:
            raise ValidationFailed(f"{name} must not be negative.", code="negative_amount")
        setattr(investor, column, figure.amount_minor)
    investor.financials_currency = currency


def _apply_tax(investor: Investor) -> None:
    if investor.tax_id:
        tax_id = investor.tax_id.strip()
        if not _TAX_ID_PATTERN.match(tax_id):
            raise ValidationFailed(
                "tax_id must be 4 to 40 letters, digits, spaces or dashes.", code="invalid_tax_id"
            )
        if investor.tax_form == TaxForm.W9:
            digits = re.sub(r"[ -]", "", tax_id)
            if not (digits.isdigit() and len(digits) == 9):
                raise ValidationFailed(
                    "With a W-9 the tax id is a 9-digit SSN, ITIN or EIN.", code="invalid_tax_id"
                )
            tax_id = digits
        investor.tax_id = tax_id
    rate = investor.treaty_withholding_rate_basis_points
    if rate is not None and investor.tax_form != TaxForm.W8BEN:
        raise ValidationFailed(
            "A treaty withholding rate applies only with a W-8BEN on file.",
            code="treaty_rate_needs_w8ben",
        )
    if rate is not None and not 0 <= rate <= 10_000:
        raise ValidationFailed(
            "The treaty withholding rate is 0 to 10,000 basis points.", code="invalid_rate"
        )


def investor_update_profile(*, investor: Investor, changes: Mapping[str, object]) -> Investor:
    """Partial update of the investor's own profile. KYC, accreditation and sophistication are
    not profile fields: they change only through their own services."""
    unknown = set(changes) - PLAIN_FIELDS - set(MONEY_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"These fields cannot be changed here: {', '.join(sorted(unknown))}.",
            code="field_not_editable",
        )
    with transaction.atomic():
        locked = Investor.objects.select_for_update().get(pk=investor.pk)
        before = {field: getattr(locked, field) for field in IDENTITY_FIELDS}
        for field in PLAIN_FIELDS - {"financials_currency"}:
            if field in changes:
                value = changes[field]
                if field == "tax_id" and value is None:
                    value = ""
                if field in {"country", "us_state"} and isinstance(value, str):
                    value = value.strip().upper()
                setattr(locked, field, value)
        if "country" in changes and locked.country != "US" and "us_state" not in changes:
            locked.us_state = ""  # moving out of the US drops the state
        rate_given = "treaty_withholding_rate_basis_points" in changes
        if "tax_form" in changes and locked.tax_form != TaxForm.W8BEN and not rate_given:
            locked.treaty_withholding_rate_basis_points = None
        if not locked.legal_name.strip():
            raise ValidationFailed("legal_name must not be blank.", code="invalid_legal_name")
        _check_residence(country=locked.country, us_state=locked.us_state)
        _apply_financials(locked, changes)
        _apply_tax(locked)
        identity_changed = any(getattr(locked, f) != before[f] for f in IDENTITY_FIELDS)
        if identity_changed and locked.kyc_status == KycStatus.APPROVED:
            _record_decision(
                investor=locked,
                subject=DecisionSubject.KYC,
                from_status=KycStatus.APPROVED,
                to_status=KycStatus.PENDING,
                reason="Identity details changed by the investor; review again.",
                decided_by=None,
            )
            locked.kyc_status = KycStatus.PENDING
            locked.kyc_reason = ""
        locked.save()
    return locked


# --- KYC ------------------------------------------------------------------------------------


def investor_kyc_decide(
    *, investor_id: int, decided_by: User, decision: str, reason: str
) -> Investor:
    """Staff: pending → approved or rejected, with a reason."""
    staff_required(decided_by)
    if decision not in (KycStatus.APPROVED, KycStatus.REJECTED):
        raise ValidationFailed("decision is 'approved' or 'rejected'.", code="invalid_decision")
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("A KYC decision needs a reason.", code="reason_required")
    with transaction.atomic():
        investor = Investor.objects.filter(pk=investor_id).first()
        if investor is None:
            raise NotFound(f"Investor {investor_id} not found.", code="investor_not_found")
        if investor.user_id == decided_by.pk:
            raise NotAllowed("Staff may not decide their own KYC.", code="own_kyc")
        changed = Investor.objects.filter(pk=investor_id, kyc_status=KycStatus.PENDING).update(
            kyc_status=decision, kyc_reason=reason, kyc_decided_at=timezone.now()
        )
        if changed != 1:
            raise InvalidTransition(
                f"KYC is {investor.kyc_status}, not pending: it cannot become {decision}.",
                code="kyc_not_pending",
            )
        _record_decision(
            investor=investor,
            subject=DecisionSubject.KYC,
            from_status=KycStatus.PENDING,
            to_status=decision,
            reason=reason,
            decided_by=decided_by,
        )
        investor.refresh_from_db()
    return investor


# --- accreditation --------------------------------------------------------------------------


def investor_accreditation_verify(
    *,
    investor_id: int,
    approved_by: User,
    method: str,
    document_reference: str,
    verifier: str,
    verified_at: datetime,
    expires_at: datetime | None = None,
) -> AccreditationEvidence:
    """Staff: record the evidence checked and mark accreditation verified until it expires
    (by default 90 days after verification)."""
    staff_required(approved_by)
    now = timezone.now()
    if method not in EvidenceMethod.values:
        raise ValidationFailed(f"Unknown evidence method {method!r}.", code="invalid_method")
    if not document_reference.strip() or not verifier.strip():
        raise ValidationFailed(
            "Evidence needs a document reference and a verifier.", code="evidence_incomplete"
        )
    if verified_at > now:
        raise ValidationFailed("verified_at is in the future.", code="verified_in_future")
    pack = reg_d_pack(verified_at)
    if expires_at is None:
        expires_at = verified_at + timedelta(days=pack.verification_validity_days_506c)
    if expires_at <= now:
        raise ValidationFailed(
            f"This evidence already expired on {expires_at.date().isoformat()}.",
            code="evidence_expired",
        )
    with transaction.atomic():
        investor = Investor.objects.filter(pk=investor_id).first()
        if investor is None:
            raise NotFound(f"Investor {investor_id} not found.", code="investor_not_found")
        old_status = investor.accreditation_status
        changed = Investor.objects.filter(pk=investor_id, accreditation_status=old_status).update(
            accreditation_status=AccreditationStatus.VERIFIED,
            accreditation_expires_at=expires_at,
        )
        if changed != 1:
            raise Conflict("Accreditation changed meanwhile; retry.", code="concurrent_change")
        evidence = AccreditationEvidence.objects.create(
            investor=investor,
            method=method,
            document_reference=document_reference.strip(),
            verifier=verifier.strip(),
            verified_at=verified_at,
            expires_at=expires_at,
            approved_by=approved_by,
        )
        _record_decision(
            investor=investor,
            subject=DecisionSubject.ACCREDITATION,
            from_status=old_status,
            to_status=AccreditationStatus.VERIFIED,
            reason=f"Verified by {evidence.verifier} ({method}, ref {evidence.document_reference})"
            f" until {expires_at.date().isoformat()}.",
            decided_by=approved_by,
            rule_version=pack.version,
        )
    return evidence


def investor_accreditation_self_certify(*, investor: Investor) -> Investor:
    """The investor certifies they are accredited — enough for 506(b), not for 506(c). The
    figures on their profile must pass the accredited-investor test."""
    now = timezone.now()
    with transaction.atomic():
        current = Investor.objects.select_for_update().get(pk=investor.pk)
        old_status = current.accreditation_status
        if old_status == AccreditationStatus.SELF_CERTIFIED:
            return current
        expires_at = current.accreditation_expires_at
        if old_status == AccreditationStatus.VERIFIED and expires_at and expires_at > now:
            raise Conflict(
                f"Accreditation is already verified until {expires_at.date().isoformat()}.",
                code="already_verified",
            )
        decision = accredited_investor_test(investor_facts(current), now)
        if not decision.allowed:
            raise ValidationFailed(decision.reason, code=decision.code)
        changed = Investor.objects.filter(pk=current.pk, accreditation_status=old_status).update(
            accreditation_status=AccreditationStatus.SELF_CERTIFIED, accreditation_expires_at=None
        )
        assert changed == 1  # the row is locked
        _record_decision(
            investor=current,
            subject=DecisionSubject.ACCREDITATION,
            from_status=old_status,
            to_status=AccreditationStatus.SELF_CERTIFIED,
            reason=f"Self-certified by the investor. {decision.reason}",
            decided_by=current.user,
            rule_version=decision.rule_version,
        )
        current.refresh_from_db()
    return current


# --- knowledge test -------------------------------------------------------------------------


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February → 28 February
        return moment.replace(year=moment.year + years, day=28)


def knowledge_test_submit(
    *, investor: Investor, answers: Mapping[str, str]
) -> KnowledgeTestAttempt:
    """Score the answers server-side and keep the attempt; a pass is valid for 2 years."""
    result = knowledge_test.score(answers)
    now = timezone.now()
    valid_until = (
        add_years(now, ecsp_pack(now).knowledge_test_validity_years) if result.passed else None
    )
    with transaction.atomic():
        current = Investor.objects.select_for_update().get(pk=investor.pk)
        attempt = KnowledgeTestAttempt.objects.create(
            investor=current,
            test_version=result.test_version,
            answers=dict(answers),
            score=result.score,
            max_score=result.max_score,
            passed=result.passed,
            taken_at=now,
            valid_until=valid_until,
        )
        if valid_until is not None:
            Investor.objects.filter(pk=current.pk).update(knowledge_test_valid_until=valid_until)
    return attempt
