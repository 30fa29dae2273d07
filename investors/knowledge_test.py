"""The ECSP entry knowledge test (Regulation (EU) 2020/1503, Art. 21): questions in code.

The correct answers never leave the server: `questions_public()` is what the API shows, and
`score()` marks a submission. A new wording or answer key is a new `TEST_VERSION`, recorded on
every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import ValidationFailed

TEST_VERSION = "knowledge-test-2024-1"


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    choices: tuple[tuple[str, str], ...]  # (choice id, text)
    correct_choice: str


QUESTIONS: tuple[Question, ...] = (
    Question(
        "capital_loss",
        "If the property project fails, how much of your investment could you lose?",
        (
            ("a", "Nothing: crowdfunding investments are guaranteed by a deposit scheme."),
            ("b", "At most 10%."),
            ("c", "All of it."),
        ),
        "c",
    ),
    Question(
        "liquidity",
        "Can you normally sell your units whenever you want at their full value?",
        (
            ("a", "Yes, like a bank deposit."),
            ("b", "No: there may be no buyer, resale can be restricted, and prices can fall."),
            ("c", "Yes, the platform must buy them back on request."),
        ),
        "b",
    ),
    Question(
        "diversification",
        "Which spreads your risk best?",
        (
            ("a", "Putting all your savings into one property project."),
            ("b", "Splitting a small share of your savings across several investments."),
            ("c", "Borrowing to invest more in the project with the highest return."),
        ),
        "b",
    ),
    Question(
        "returns",
        "A project advertises a target return of 12% a year. What does that mean?",
        (
            ("a", "It is a target; the actual return can be lower or negative."),
            ("b", "The platform guarantees at least 12% a year."),
            ("c", "You get 12% a year or your money back."),
        ),
        "a",
    ),
    Question(
        "leverage",
        "A property bought with a large loan falls 20% in value. What happens to the equity?",
        (
            ("a", "It falls by less than 20%, because the lender takes the loss first."),
            ("b", "It falls by exactly 20%."),
            ("c", "It falls by more than 20%, because the loan is repaid first."),
        ),
        "c",
    ),
    Question(
        "reflection_period",
        "After making an offer on an ECSP platform, as a non-sophisticated investor you may:",
        (
            ("a", "Revoke it within 4 days without giving a reason."),
            ("b", "Never revoke it."),
            ("c", "Revoke it only if the project fails."),
        ),
        "a",
    ),
)
MAX_SCORE = len(QUESTIONS)
PASS_MARK = 5  # of 6: at most one wrong answer


@dataclass(frozen=True)
class KnowledgeTestResult:
    test_version: str
    score: int
    max_score: int
    passed: bool
    wrong_question_ids: tuple[str, ...]


def questions_public() -> list[dict[str, object]]:
    """The questions and choices, without the answer key."""
    return [
        {
            "id": question.id,
            "prompt": question.prompt,
            "choices": [{"id": choice, "text": text} for choice, text in question.choices],
        }
        for question in QUESTIONS
    ]


def score(answers: Mapping[str, str]) -> KnowledgeTestResult:
    """Mark a complete submission: every question answered once with one of its choices."""
    known = {question.id for question in QUESTIONS}
    unknown = sorted(set(answers) - known)
    missing = sorted(known - set(answers))
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"unanswered: {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown questions: {', '.join(unknown)}")
        raise ValidationFailed(
            f"Answer every question of the test ({'; '.join(problems)}).",
            code="knowledge_test_incomplete",
        )
    wrong: list[str] = []
    for question in QUESTIONS:
        answer = answers[question.id]
        if answer not in {choice for choice, _ in question.choices}:
            raise ValidationFailed(
                f"{answer!r} is not a choice of question {question.id!r}.",
                code="knowledge_test_invalid_choice",
            )
        if answer != question.correct_choice:
            wrong.append(question.id)
    points = MAX_SCORE - len(wrong)
    return KnowledgeTestResult(TEST_VERSION, points, MAX_SCORE, points >= PASS_MARK, tuple(wrong))
