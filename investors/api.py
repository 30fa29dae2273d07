"""Investor endpoints: registration, own profile and limits, knowledge test, staff decisions."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Status

from common.auth import api_token_issue, staff_required
from common.errors import NotFound, ValidationFailed
from common.models import User
from common.schemas import ErrorOut, ValidationErrorOut
from investors import knowledge_test, selectors, services
from investors.compliance import ecsp_pack
from investors.models import Investor
from investors.schemas import (
    NULLABLE_PATCH_FIELDS,
    AccreditationEvidenceIn,
    AccreditationEvidenceOut,
    InvestorOut,
    KnowledgeTestAnswersIn,
    KnowledgeTestAttemptOut,
    KnowledgeTestOut,
    KycDecisionIn,
    LimitsOut,
    ProfilePatchIn,
    RegisterIn,
    RegisterOut,
)
from investors.services import MONEY_FIELDS, MoneyFigure

router = Router(tags=["investors"])
registration_router = Router(tags=["auth"])

ERRORS_SIGNED_IN = {401: ErrorOut, 404: ErrorOut, 422: ValidationErrorOut}
ERRORS_STAFF = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
}


def _me(request: HttpRequest) -> Investor:
    return selectors.investor_of_user(user=request.user)


def _staff(request: HttpRequest) -> User:
    return staff_required(request.user)


@registration_router.post(
    "/register",
    auth=None,
    response={201: RegisterOut, 400: ErrorOut, 409: ErrorOut, 422: ValidationErrorOut},
)
def investor_register(request: HttpRequest, payload: RegisterIn) -> Status[RegisterOut]:
    """Create an account (email login) with an investor profile; returns a bearer token."""
    investor = services.investor_register(
        email=str(payload.email),
        password=payload.password,
        legal_name=payload.legal_name,
        kind=payload.kind,
        country=payload.country,
        us_state=payload.us_state,
    )
    issued = api_token_issue(user=investor.user)
    out = RegisterOut(
        investor=InvestorOut.of(investor), token=issued.token, expires_at=issued.expires_at
    )
    return Status(201, out)


@router.get("/me", response={200: InvestorOut, **ERRORS_SIGNED_IN})
def investor_me(request: HttpRequest) -> InvestorOut:
    return InvestorOut.of(_me(request))


@router.patch("/me", response={200: InvestorOut, 400: ErrorOut, **ERRORS_SIGNED_IN})
def investor_me_update(request: HttpRequest, payload: ProfilePatchIn) -> InvestorOut:
    """Partial update; send null to clear a financial figure, the tax id or the treaty rate."""
    changes: dict[str, object] = {}
    for field in sorted(payload.model_fields_set):
        value = getattr(payload, field)
        if value is None and field not in NULLABLE_PATCH_FIELDS:
            raise ValidationFailed(f"{field} cannot be null.", code="null_not_allowed")
        if field in MONEY_FIELDS and value is not None:
            value = MoneyFigure(amount_minor=value.to_minor_units(), currency=value.currency)
        changes[field] = value
    investor = services.investor_update_profile(investor=_me(request), changes=changes)
    return InvestorOut.of(selectors.investor_get(investor_id=investor.pk))


@router.get("/me/limits", response={200: LimitsOut, **ERRORS_SIGNED_IN})
def investor_me_limits(request: HttpRequest) -> LimitsOut:
    """What you may invest under each exemption today, with the rule version used."""
    summary = selectors.investor_limits_summary(investor=_me(request), on=timezone.now())
    return LimitsOut.of(summary)


@router.get("/me/knowledge-test", response={200: KnowledgeTestOut, **ERRORS_SIGNED_IN})
def knowledge_test_questions(request: HttpRequest) -> KnowledgeTestOut:
    """The ECSP entry knowledge test: questions and choices (never the answers)."""
    _me(request)
    return KnowledgeTestOut(
        test_version=knowledge_test.TEST_VERSION,
        pass_mark=knowledge_test.PASS_MARK,
        max_score=knowledge_test.MAX_SCORE,
        valid_for_years=ecsp_pack(timezone.now()).knowledge_test_validity_years,
        questions=knowledge_test.questions_public(),  # type: ignore[arg-type]
    )


@router.post(
    "/me/knowledge-test",
    response={201: KnowledgeTestAttemptOut, 400: ErrorOut, **ERRORS_SIGNED_IN},
)
def knowledge_test_submit(
    request: HttpRequest, payload: KnowledgeTestAnswersIn
) -> Status[KnowledgeTestAttemptOut]:
    answers: dict[str, str] = {}
    for answer in payload.answers:
        if answer.question_id in answers:
            raise ValidationFailed(
                f"Question {answer.question_id!r} is answered twice.", code="duplicate_answer"
            )
        answers[answer.question_id] = answer.choice_id
    attempt = services.knowledge_test_submit(investor=_me(request), answers=answers)
    return Status(201, KnowledgeTestAttemptOut.model_validate(attempt, from_attributes=True))


@router.post(
    "/me/accreditation/self-certify",
    response={200: InvestorOut, 400: ErrorOut, 409: ErrorOut, **ERRORS_SIGNED_IN},
)
def accreditation_self_certify(request: HttpRequest) -> InvestorOut:
    """Certify that you are accredited (enough for 506(b), not for 506(c))."""
    investor = services.investor_accreditation_self_certify(investor=_me(request))
    return InvestorOut.of(investor)


@router.get("/{int:investor_id}", response={200: InvestorOut, **ERRORS_SIGNED_IN})
def investor_detail(request: HttpRequest, investor_id: int) -> InvestorOut:
    """Staff only; anyone else gets 404."""
    user = request.user
    if not (isinstance(user, User) and user.is_staff):
        raise NotFound(f"Investor {investor_id} not found.", code="investor_not_found")
    return InvestorOut.of(selectors.investor_get(investor_id=investor_id))


@router.post("/{int:investor_id}/kyc", response={200: InvestorOut, **ERRORS_STAFF})
def investor_kyc_decide(
    request: HttpRequest, investor_id: int, payload: KycDecisionIn
) -> InvestorOut:
    """Staff: approve or reject a pending KYC, with a reason."""
    investor = services.investor_kyc_decide(
        investor_id=investor_id,
        decided_by=_staff(request),
        decision=payload.decision,
        reason=payload.reason,
    )
    return InvestorOut.of(selectors.investor_get(investor_id=investor.pk))


@router.post(
    "/{int:investor_id}/accreditation", response={201: AccreditationEvidenceOut, **ERRORS_STAFF}
)
def investor_accreditation_verify(
    request: HttpRequest, investor_id: int, payload: AccreditationEvidenceIn
) -> Status[AccreditationEvidenceOut]:
    """Staff: record checked evidence; accreditation becomes verified until it expires."""
    evidence = services.investor_accreditation_verify(
        investor_id=investor_id,
        approved_by=_staff(request),
        method=payload.method,
        document_reference=payload.document_reference,
        verifier=payload.verifier,
        verified_at=payload.verified_at,
        expires_at=payload.expires_at,
    )
    return Status(
        201,
        AccreditationEvidenceOut(
            id=evidence.pk,
            investor_id=evidence.investor_id,
            method=evidence.method,
            document_reference=evidence.document_reference,
            verifier=evidence.verifier,
            verified_at=evidence.verified_at,
            expires_at=evidence.expires_at,
            approved_by_email=evidence.approved_by.email,
            created_at=evidence.created_at,
        ),
    )
