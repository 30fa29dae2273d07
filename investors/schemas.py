"""API schemas. Inputs forbid unknown fields; outputs never carry the clear tax id."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import AwareDatetime, EmailStr, Field

from common.schemas import MoneyIn, MoneyOut, StrictSchema
from investors.models import Investor
from investors.selectors import InvestorLimitsSummary, LimitLine

KindLiteral = Literal["individual", "joint", "entity", "trust", "ira"]


class RegisterIn(StrictSchema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)
    legal_name: str = Field(min_length=1, max_length=200)
    kind: KindLiteral = "individual"
    country: str = Field(min_length=2, max_length=2, examples=["US"])
    us_state: str = Field(default="", max_length=2, examples=["NY"])


class ProfilePatchIn(StrictSchema):
    """Every field optional; KYC, accreditation and sophistication are not editable here."""

    legal_name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: KindLiteral | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    us_state: str | None = Field(default=None, max_length=2)
    income_year_minus_2: MoneyIn | None = None
    income_year_minus_1: MoneyIn | None = None
    income_current_year_expected: MoneyIn | None = None
    is_joint_income: bool | None = None
    net_worth: MoneyIn | None = Field(default=None, description="Excluding primary residence.")
    entity_assets: MoneyIn | None = None
    financials_currency: Literal["USD", "EUR"] | None = None
    has_securities_license: bool | None = None
    tax_form: Literal["w9", "w8ben", "none"] | None = None
    tax_id: str | None = Field(default=None, max_length=40)
    treaty_withholding_rate_basis_points: int | None = Field(default=None, ge=0, le=10_000)


# Fields that may be sent as null to clear them; for the others null means "leave alone".
NULLABLE_PATCH_FIELDS = frozenset(
    {
        "income_year_minus_2",
        "income_year_minus_1",
        "income_current_year_expected",
        "net_worth",
        "entity_assets",
        "tax_id",
        "treaty_withholding_rate_basis_points",
    }
)


def _money_or_none(amount_minor: int | None, currency: str) -> MoneyOut | None:
    return None if amount_minor is None else MoneyOut.of_minor_units(amount_minor, currency)


class InvestorOut(Schema):
    id: int
    email: str
    kind: str
    legal_name: str
    country: str
    us_state: str
    financials_currency: str
    income_year_minus_2: MoneyOut | None
    income_year_minus_1: MoneyOut | None
    income_current_year_expected: MoneyOut | None
    is_joint_income: bool
    net_worth: MoneyOut | None
    entity_assets: MoneyOut | None
    has_securities_license: bool
    tax_form: str
    tax_id_masked: str = Field(description="Only the last 4 characters are ever shown.")
    treaty_withholding_rate_basis_points: int | None
    accreditation_status: str
    accreditation_expires_at: datetime | None
    is_sophisticated: bool
    knowledge_test_valid_until: datetime | None
    kyc_status: str
    kyc_reason: str
    kyc_decided_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, investor: Investor) -> InvestorOut:
        currency = investor.financials_currency
        return cls(
            id=investor.pk,
            email=investor.user.email,
            kind=investor.kind,
            legal_name=investor.legal_name,
            country=investor.country,
            us_state=investor.us_state,
            financials_currency=currency,
            income_year_minus_2=_money_or_none(investor.income_year_minus_2_minor, currency),
            income_year_minus_1=_money_or_none(investor.income_year_minus_1_minor, currency),
            income_current_year_expected=_money_or_none(
                investor.income_current_year_expected_minor, currency
            ),
            is_joint_income=investor.is_joint_income,
            net_worth=_money_or_none(investor.net_worth_minor, currency),
            entity_assets=_money_or_none(investor.entity_assets_minor, currency),
            has_securities_license=investor.has_securities_license,
            tax_form=investor.tax_form,
            tax_id_masked=investor.tax_id_masked,
            treaty_withholding_rate_basis_points=investor.treaty_withholding_rate_basis_points,
            accreditation_status=investor.accreditation_status,
            accreditation_expires_at=investor.accreditation_expires_at,
            is_sophisticated=investor.is_sophisticated,
            knowledge_test_valid_until=investor.knowledge_test_valid_until,
            kyc_status=investor.kyc_status,
            kyc_reason=investor.kyc_reason,
            kyc_decided_at=investor.kyc_decided_at,
            created_at=investor.created_at,
        )


class RegisterOut(Schema):
    investor: InvestorOut
    token: str
    token_type: str = "Bearer"
    expires_at: datetime


class LimitOut(Schema):
    exemption: str
    label: str
    allowed: bool
    unlimited: bool = Field(description="True when no amount limit applies.")
    amount: MoneyOut | None
    reason: str
    rule_version: str
    code: str

    @classmethod
    def of(cls, line: LimitLine) -> LimitOut:
        decision = line.decision
        amount = decision.amount_allowed_minor
        return cls(
            exemption=line.exemption,
            label=line.label,
            allowed=decision.allowed,
            unlimited=amount is None and decision.allowed,
            amount=None if amount is None else MoneyOut.of_minor_units(amount, decision.currency),
            reason=decision.reason,
            rule_version=decision.rule_version,
            code=decision.code,
        )


class LimitsOut(Schema):
    on: datetime
    limits: list[LimitOut]

    @classmethod
    def of(cls, summary: InvestorLimitsSummary) -> LimitsOut:
        return cls(on=summary.on, limits=[LimitOut.of(line) for line in summary.lines])


class ChoiceOut(Schema):
    id: str
    text: str


class QuestionOut(Schema):
    id: str
    prompt: str
    choices: list[ChoiceOut]


class KnowledgeTestOut(Schema):
    test_version: str
    pass_mark: int
    max_score: int
    valid_for_years: int
    questions: list[QuestionOut]


class AnswerIn(StrictSchema):
    question_id: str = Field(max_length=60)
    choice_id: str = Field(max_length=10)


class KnowledgeTestAnswersIn(StrictSchema):
    answers: list[AnswerIn] = Field(max_length=50)


class KnowledgeTestAttemptOut(Schema):
    id: int
    test_version: str
    score: int
    max_score: int
    passed: bool
    taken_at: datetime
    valid_until: datetime | None


class KycDecisionIn(StrictSchema):
    decision: Literal["approved", "rejected"]
    reason: str = Field(min_length=1, max_length=2000)


class AccreditationEvidenceIn(StrictSchema):
    method: Literal["income", "net_worth", "license", "entity_assets", "other"]
    document_reference: str = Field(min_length=1, max_length=200)
    verifier: str = Field(min_length=1, max_length=200)
    verified_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(
        default=None, description="Defaults to 90 days after verified_at."
    )


class AccreditationEvidenceOut(Schema):
    id: int
    investor_id: int
    method: str
    document_reference: str
    verifier: str
    verified_at: datetime
    expires_at: datetime
    approved_by_email: str
    created_at: datetime
