"""The cap-table ledger: who owns how many units of which offering, and where every cent sits.

Invariants (enforced by the database where it can, and checked by `captable/ledger.py`, the
only writer, before it inserts):

1. Double entry: the postings of an entry sum to zero per asset. PostgreSQL checks it with a
   deferred constraint trigger at commit, so even a raw INSERT cannot commit an unbalanced
   entry.
2. Append-only: entries, postings, lots and seals are never updated or deleted (triggers);
   a mistake is corrected by a reversing entry. An account row changes only its `balance`,
   and only from the posting trigger.
3. Balances: `Account.balance` is maintained by a trigger on posting insert; a CHECK refuses
   a negative balance on any account that is not allowed to go negative (only external
   settlement accounts and an offering's authorized-units counter are). This is what makes
   overselling and negative holdings impossible even under concurrent writers.
4. Quantities are integers: money in minor units of its currency, units in quanta of the
   offering. No posting has a zero amount.
5. Lots: every unit posting on a holding account names a lot; a lot's quanta are the sum of
   its postings and never go below zero; holdings = sum of their lots.
6. Tamper evidence: committed entries are sealed in batches into per-offering and
   per-currency hash chains (`ChainSeal`), each seal an HMAC over ids and amounts only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from investors.models import Investor
from offerings.models import Issuer, Offering

UNITS_ASSET_PREFIX = "units:"


def units_asset(offering_id: int) -> str:
    return f"{UNITS_ASSET_PREFIX}{offering_id}"


class MachineKeyField(models.CharField):  # type: ignore[type-arg]
    """A key made by the system for the system (an entry's idempotency key, an account's key):
    compared byte by byte. On PostgreSQL the column collates "C", so its comparisons and its
    unique index skip the locale's collation (a pay run writes and looks up 100,000 of each:
    with a C.UTF-8 or en_US database collation every comparison goes through strcoll). SQLite
    compares bytes already (BINARY)."""

    def db_type(self, connection: Any) -> str | None:
        base = super().db_type(connection)
        if connection.vendor == "postgresql" and base is not None:
            return f'{base} COLLATE "C"'
        return base


class AccountKind(models.TextChoices):
    # units
    TREASURY = "treasury", "Authorized, unissued units (offering)"
    AUTHORIZED = "authorized", "Units authorized by the issuer (offering, counter)"
    HOLDING = "holding", "Units held (investor, offering)"
    # cash
    ESCROW = "escrow", "Escrow (investor, offering)"
    CASH = "cash", "Available cash (investor)"
    PROCEEDS = "proceeds", "Issuer proceeds"
    OPERATING = "operating", "Issuer operating"
    PROMOTE = "promote", "Issuer promote (sponsor's waterfall share)"
    DISTRIBUTION_PAYABLE = "distribution_payable", "Distribution payable"
    WITHHOLDING_PAYABLE = "withholding_payable", "Withholding payable (issuer)"
    PLATFORM_FEES = "platform_fees", "Platform fees"
    EXTERNAL = "external", "External settlement (outside world)"


UNIT_ACCOUNT_KINDS = (AccountKind.TREASURY, AccountKind.AUTHORIZED, AccountKind.HOLDING)
NEGATIVE_ALLOWED_KINDS = (AccountKind.EXTERNAL, AccountKind.AUTHORIZED)


class Account(models.Model):
    # Unique by the Meta constraint: a `unique=True` CharField would add a second, LIKE-pattern
    # index on PostgreSQL that no query uses (every account written updates each index).
    key = MachineKeyField(max_length=120)
    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    # A currency code ("USD") or an offering's units ("units:42").
    asset = models.CharField(max_length=32)
    # Indexed by the Meta indexes ((offering, kind) serves lookups by offering alone).
    offering = models.ForeignKey(
        Offering,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # Checked per insert statement on PostgreSQL (migration 0023: one set-based look-up and
    # lock, not a deferred check per account: a pay run opens 100,000 cash accounts); a
    # trigger on investors refuses deleting one an account names.
    investor = models.ForeignKey(
        Investor,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    issuer = models.ForeignKey(
        Issuer,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # Other owners that have no model yet (a distribution's id for its payable account).
    reference = models.BigIntegerField(null=True, blank=True)
    allows_negative = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    # Bumped by the posting trigger with every entry that touches the account: a posting
    # computed from the account's state (FIFO lots, balance) without holding its lock is
    # written only if the version is still the one it read (captable/ledger.py).
    version = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The offering and issuer indexes leave out the accounts without one (an investor's
        # cash account: a pay run opens 100,000 of them); a lookup by offering or issuer
        # implies it is set, so these partial indexes serve it.
        indexes = [
            models.Index(
                fields=["offering", "kind"],
                condition=Q(offering__isnull=False),
                name="account_offering_kind",
            ),
            models.Index(fields=["investor"]),
            models.Index(
                fields=["issuer"], condition=Q(issuer__isnull=False), name="account_issuer"
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="account_key_unique"),
            models.CheckConstraint(
                condition=Q(allows_negative=True) | Q(balance__gte=0),
                name="account_no_negative_balance",
            ),
            models.CheckConstraint(
                condition=Q(allows_negative=True, kind__in=NEGATIVE_ALLOWED_KINDS)
                | (Q(allows_negative=False) & ~Q(kind__in=NEGATIVE_ALLOWED_KINDS)),
                name="account_negative_only_external_or_authorized",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=AccountKind.values), name="account_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind=AccountKind.HOLDING)
                | Q(offering__isnull=False, investor__isnull=False),
                name="account_holding_has_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_units(self) -> bool:
        return self.asset.startswith(UNITS_ASSET_PREFIX)


class EntryKind(models.TextChoices):
    AUTHORIZE = "authorize"
    ISSUE = "issue"
    TRANSFER = "transfer"
    REDEEM = "redeem"
    CASH_IN = "cash_in", "Cash received from outside"
    CASH_MOVE = "cash_move", "Cash moved between platform accounts"
    CASH_OUT = "cash_out", "Cash paid out"
    REVERSAL = "reversal"


class Entry(models.Model):
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    idempotency_key = MachineKeyField(max_length=200, unique=True)
    # SHA-256 of the request that produced the entry: same key + same request = same entry.
    request_digest = models.CharField(max_length=64)
    effective_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    # Indexed only where set (Meta): entries written by the system (pay runs, closings) have
    # no author and would only add NULLs to the index.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    memo = models.TextField(blank=True)
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )
    # The hash chain this entry is sealed into: "offering:<id>" or "cash:<currency>".
    chain = models.CharField(max_length=40)
    # Evidence and approvals recorded with the entry (e.g. a resale-lock exception).
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "entries"
        # No (chain, id) index: the sealing task reads its queue (UnsealedEntry), not entries
        # by chain.
        indexes = [
            models.Index(
                fields=["created_by"],
                condition=Q(created_by__isnull=False),
                name="entry_created_by",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=EntryKind.values), name="entry_kind_valid"),
            models.CheckConstraint(
                condition=Q(reverses__isnull=True) | Q(kind=EntryKind.REVERSAL),
                name="entry_only_reversals_reverse",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.effective_at:%Y-%m-%d %H:%M:%S}"


class Lot(models.Model):
    """Units acquired together: the issue date (kept through transfers, for the resale lock)
    and the cost. Remaining quanta and cost are the sums of the lot's postings."""

    # Indexed by (holding, issued_at, id) below, the FIFO order; origin_lot is lineage only.
    # Every index is written by every posting, so none is kept that a query does not use.
    holding = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="lots", db_index=False
    )
    acquired_by = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="lots_opened")
    issued_at = models.DateTimeField()
    origin_lot = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    quanta_acquired = models.BigIntegerField()
    cost_minor_acquired = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["holding", "issued_at", "id"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(quanta_acquired__gt=0) & Q(cost_minor_acquired__gte=0),
                name="lot_positive",
            )
        ]

    def __str__(self) -> str:
        return f"lot #{self.pk} of {self.holding_id} issued {self.issued_at:%Y-%m-%d}"


class Posting(models.Model):
    # entry, account and lot are foreign keys checked per STATEMENT, not per row (no database
    # foreign-key constraint): on PostgreSQL the posting trigger (`captable_postings_apply`)
    # refuses a posting whose entry, account or lot does not exist, with one set-based look-up
    # per insert statement instead of one locking look-up per row (420,000 of them at COMMIT
    # in a pay run to 100,000 holders); on SQLite a row trigger does (migration 0018). The
    # parent rows can never go away — entries and lots are append-only, accounts cannot be
    # deleted — so no lock on them is needed either.
    entry = models.ForeignKey(
        Entry, on_delete=models.PROTECT, related_name="postings", db_constraint=False
    )
    # account and lot are indexed by the Meta indexes below ((account, effective_at) serves
    # lookups by account alone); their foreign keys add no second index.
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="postings",
        db_index=False,
        db_constraint=False,
    )
    asset = models.CharField(max_length=32)
    amount = models.BigIntegerField()
    # Cost basis moving with units on holding accounts (same sign as `amount`), else 0.
    cost_minor = models.BigIntegerField(default=0)
    lot = models.ForeignKey(
        Lot,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="postings",
        db_index=False,
        db_constraint=False,
    )
    # Copied from the entry so as-of queries read one table.
    effective_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["account", "effective_at"]),
            models.Index(fields=["asset", "effective_at"]),
            # Cash postings (most of them) have no lot: they stay out of this index.
            models.Index(fields=["lot"], condition=Q(lot__isnull=False), name="posting_lot"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="posting_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount:+d} {self.asset}"


class ChainSeal(models.Model):
    """One link of a hash chain: an HMAC over the previous link and a batch of entries."""

    chain = models.CharField(max_length=40)
    sequence = models.PositiveIntegerField()
    previous_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)
    entry_count = models.PositiveIntegerField()
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "sequence"], name="seal_chain_sequence")
        ]

    def __str__(self) -> str:
        return f"{self.chain} #{self.sequence}"


class SealedEntry(models.Model):
    """An entry's place in a seal, with the SHA-256 of its canonical content: verification
    names the exact entry that changed; the seal's HMAC protects these digests."""

    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, primary_key=True)
    seal = models.ForeignKey(ChainSeal, on_delete=models.PROTECT, related_name="entries")
    entry_digest = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"entry {self.entry_id} in {self.seal_id}"


class UnsealedEntry(models.Model):
    """The sealing queue: a database trigger adds every new entry here; sealing takes a
    chain's rows oldest first and deletes them in the transaction that writes their seal. It
    keeps finding pending entries proportional to what is pending, not to the chain's length
    (an anti-join over every entry). Not ledger data: verification reads the entries."""

    # No row-level foreign key on PostgreSQL (migration 0023): the entries' trigger fills the
    # queue from the entries it was fired for; a row written any other way is checked by a
    # statement trigger.
    entry = models.OneToOneField(
        Entry, on_delete=models.CASCADE, primary_key=True, db_constraint=False
    )
    chain = models.CharField(max_length=40)

    class Meta:
        indexes = [models.Index(fields=["chain", "entry"])]

    def __str__(self) -> str:
        return f"entry {self.entry_id} awaiting its {self.chain} seal"


# --- requests that change the ledger: transfers and reversals --------------------------------
#
# Invariants (database constraints unless said otherwise):
# - a transfer request moves a positive number of quanta between two different investors;
# - a resale-lock exception always carries a document reference; a forced transfer always
#   carries its legal basis, a reason and a document reference, and claims no exception;
# - four eyes: whoever decides (approves or rejects) a request is never whoever requested it;
#   an approved forced transfer, an approved exception and a completed reversal name their
#   deciding staff member;
# - a request is completed exactly when it points at the ledger entry that carried it out;
# - one open reversal request per entry; an idempotency key is unique per requesting user;
# - status changes are compare-and-swaps in `captable/transfers.py`, each with a history row;
#   history rows are append-only (triggers in migration 0003).


class TransferKind(models.TextChoices):
    VOLUNTARY = "voluntary", "Requested by the holder"
    FORCED = "forced", "Forced by staff (court order, death, …)"


class TransferStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# Requests whose units are spoken for until they complete, are rejected or cancelled.
OPEN_TRANSFER_STATUSES = (TransferStatus.PENDING_APPROVAL, TransferStatus.APPROVED)
APPROVED_TRANSFER_STATUSES = (TransferStatus.APPROVED, TransferStatus.COMPLETED)


class ResaleException(models.TextChoices):
    """Reg CF (17 CFR 227.501): who may receive units within a year of their issue."""

    NONE = "none", "No exception"
    ISSUER = "issuer", "To the issuer"
    ACCREDITED_INVESTOR = "accredited_investor", "To an accredited investor"
    FAMILY_MEMBER = "family_member", "To a family member"
    TRUST = "trust", "To a trust controlled by or for the holder or family"
    REGISTERED_OFFERING = "registered_offering", "In an SEC-registered offering"


class LegalBasis(models.TextChoices):
    NONE = "none", "None (voluntary transfer)"
    COURT_ORDER = "court_order", "Court order"
    DEATH = "death", "Death of the holder"
    DIVORCE = "divorce", "Divorce settlement"
    OTHER = "other", "Other (see reason)"


class TransferRequest(models.Model):
    kind = models.CharField(
        max_length=12, choices=TransferKind.choices, default=TransferKind.VOLUNTARY
    )
    offering = models.ForeignKey(
        Offering, on_delete=models.PROTECT, related_name="transfer_requests"
    )
    seller = models.ForeignKey(Investor, on_delete=models.PROTECT, related_name="transfers_out")
    buyer = models.ForeignKey(Investor, on_delete=models.PROTECT, related_name="transfers_in")
    quanta = models.BigIntegerField()
    status = models.CharField(max_length=20, choices=TransferStatus.choices)
    exception = models.CharField(
        max_length=24, choices=ResaleException.choices, default=ResaleException.NONE
    )
    evidence_reference = models.CharField(max_length=200, blank=True)
    evidence_description = models.TextField(blank=True)
    legal_basis = models.CharField(
        max_length=16, choices=LegalBasis.choices, default=LegalBasis.NONE
    )
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="transfer_request"
    )
    idempotency_key = models.CharField(max_length=200, blank=True)
    # SHA-256 of the request body: the same key with another body is a conflict.
    request_digest = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["offering", "seller", "status"]),
            models.Index(fields=["buyer", "created_at"]),
            models.Index(fields=["status", "created_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quanta__gt=0), name="transferrequest_quanta_positive"
            ),
            models.CheckConstraint(
                condition=~Q(seller=models.F("buyer")), name="transferrequest_seller_not_buyer"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=TransferKind.values), name="transferrequest_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TransferStatus.values), name="transferrequest_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(exception__in=ResaleException.values),
                name="transferrequest_exception_valid",
            ),
            models.CheckConstraint(
                condition=Q(legal_basis__in=LegalBasis.values),
                name="transferrequest_legal_basis_valid",
            ),
            models.CheckConstraint(
                condition=Q(exception=ResaleException.NONE) | ~Q(evidence_reference=""),
                name="transferrequest_exception_has_evidence",
            ),
            models.CheckConstraint(
                condition=Q(kind=TransferKind.VOLUNTARY, legal_basis=LegalBasis.NONE)
                | (
                    Q(kind=TransferKind.FORCED, exception=ResaleException.NONE)
                    & ~Q(legal_basis=LegalBasis.NONE)
                    & ~Q(reason="")
                    & ~Q(evidence_reference="")
                ),
                name="transferrequest_forced_has_basis",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                name="transferrequest_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True, decided_at__isnull=True)
                | Q(decided_by__isnull=False, decided_at__isnull=False),
                name="transferrequest_decision_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=APPROVED_TRANSFER_STATUSES)
                | Q(kind=TransferKind.VOLUNTARY, exception=ResaleException.NONE)
                | Q(decided_by__isnull=False),
                name="transferrequest_approval_by_staff",
            ),
            models.CheckConstraint(
                condition=~Q(status=TransferStatus.REJECTED)
                | Q(decided_by__isnull=False) & ~Q(decision_reason=""),
                name="transferrequest_rejection_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(
                    status=TransferStatus.COMPLETED, entry__isnull=False, completed_at__isnull=False
                )
                | (~Q(status=TransferStatus.COMPLETED) & Q(entry__isnull=True)),
                name="transferrequest_completed_iff_entry",
            ),
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="transferrequest_idempotency_key_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"transfer #{self.pk} ({self.kind}, {self.status})"


class TransferRequestStatusChange(models.Model):
    """Append-only: who moved a transfer request from what to what, when and why."""

    transfer = models.ForeignKey(
        TransferRequest, on_delete=models.PROTECT, related_name="status_changes"
    )
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, choices=TransferStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["transfer", "created_at"])]

    def __str__(self) -> str:
        return f"transfer {self.transfer_id}: {self.from_status or '-'} → {self.to_status}"


class ReversalStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class ReversalRequest(models.Model):
    """A reversal of a posted entry, prepared by one staff member and approved by another."""

    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="reversal_requests")
    reason = models.TextField()
    status = models.CharField(
        max_length=20, choices=ReversalStatus.choices, default=ReversalStatus.PENDING_APPROVAL
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    reversal_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="reversal_request"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ReversalStatus.values), name="reversalrequest_status_valid"
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="reversalrequest_reason_given"),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                name="reversalrequest_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True, decided_at__isnull=True)
                | Q(decided_by__isnull=False, decided_at__isnull=False),
                name="reversalrequest_decision_has_time",
            ),
            models.CheckConstraint(
                condition=Q(
                    status=ReversalStatus.COMPLETED,
                    reversal_entry__isnull=False,
                    decided_by__isnull=False,
                    completed_at__isnull=False,
                )
                | (~Q(status=ReversalStatus.COMPLETED) & Q(reversal_entry__isnull=True)),
                name="reversalrequest_completed_iff_entry",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReversalStatus.REJECTED)
                | Q(decided_by__isnull=False) & ~Q(decision_reason=""),
                name="reversalrequest_rejection_has_reason",
            ),
            models.UniqueConstraint(
                fields=["entry"],
                condition=Q(status=ReversalStatus.PENDING_APPROVAL),
                name="reversalrequest_one_open_per_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"reversal request #{self.pk} of entry {self.entry_id} ({self.status})"


class ReversalRequestStatusChange(models.Model):
    """Append-only: who moved a reversal request from what to what, when and why."""

    reversal = models.ForeignKey(
        ReversalRequest, on_delete=models.PROTECT, related_name="status_changes"
    )
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, choices=ReversalStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["reversal", "created_at"])]

    def __str__(self) -> str:
        return f"reversal {self.reversal_id}: {self.from_status or '-'} → {self.to_status}"


# --- subscriptions (primary issuance, up to funding) -----------------------------------------
#
# Invariants (database constraints unless said otherwise):
# - a subscription asks for a positive number of quanta at a positive amount, in the offering's
#   currency; the investor's processing fee is never negative;
# - reservations are not ledger entries: a subscription in a *holding* status (reserved,
#   signed, funded) has its quanta counted in `Offering.units_reserved_quanta`, raised by a
#   conditional UPDATE that the offering's `offering_no_overselling` check backs; a waitlisted
#   one holds nothing and has no `reserved_at`;
# - reserved and signed subscriptions (unfunded) expire at `expires_at`;
# - a signed (or later) subscription has `signed_at` and an agreement signature row;
# - status changes are compare-and-swaps in `captable/subscriptions.py`, each with a history
#   row; history and signature rows are append-only (triggers in migration 0004).


class SubscriptionStatus(models.TextChoices):
    WAITLISTED = "waitlisted"
    RESERVED = "reserved"
    SIGNED = "signed"
    FUNDED = "funded"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    REJECTED = "rejected"
    EXPIRED = "expired"


# Subscriptions whose quanta are in the offering's `units_reserved_quanta`.
SUBSCRIPTION_HOLDING_STATUSES = (
    SubscriptionStatus.RESERVED,
    SubscriptionStatus.SIGNED,
    SubscriptionStatus.FUNDED,
)
# Reserved but not paid for: these expire.
SUBSCRIPTION_UNFUNDED_STATUSES = (SubscriptionStatus.RESERVED, SubscriptionStatus.SIGNED)
# Subscriptions that count towards an investor's limits (per offering and per exemption).
SUBSCRIPTION_LIVE_STATUSES = (
    SubscriptionStatus.WAITLISTED,
    *SUBSCRIPTION_HOLDING_STATUSES,
    SubscriptionStatus.ACCEPTED,
)
SUBSCRIPTION_SIGNED_STATUSES = (
    SubscriptionStatus.SIGNED,
    SubscriptionStatus.FUNDED,
    SubscriptionStatus.ACCEPTED,
)


class Subscription(models.Model):
    # No index of their own: `subscription_waitlist` and `subscription_investor` lead with
    # them. A single-column offering index is worse than none: with no statistics yet (a new
    # table) the planner picked it for an investor's totals in an offering and filtered every
    # subscription of the offering, on each subscribe; and each index costs every insert.
    offering = models.ForeignKey(
        Offering, on_delete=models.PROTECT, related_name="subscriptions", db_index=False
    )
    investor = models.ForeignKey(
        Investor, on_delete=models.PROTECT, related_name="subscriptions", db_index=False
    )
    status = models.CharField(max_length=12, choices=SubscriptionStatus.choices)
    quanta = models.BigIntegerField()
    amount_minor = models.BigIntegerField()
    fee_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    # The compliance decision taken at subscription, and the rule pack version it used.
    compliance_code = models.CharField(max_length=60)
    compliance_reason = models.TextField()
    rule_version = models.CharField(max_length=60)
    # Reg D 506(b): counted among the offering's (at most 35) non-accredited purchasers.
    is_non_accredited_purchaser = models.BooleanField(default=False)
    # ECSP: the explicit risk-warning acknowledgement, and the end of the 4-day reflection
    # period in which a non-sophisticated investor may revoke without giving a reason.
    risk_warning_acknowledged_at = models.DateTimeField(null=True, blank=True)
    revocable_until = models.DateTimeField(null=True, blank=True)
    reserved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["offering", "status", "id"], name="subscription_waitlist"),
            models.Index(fields=["investor", "offering", "status"], name="subscription_investor"),
            models.Index(fields=["status", "expires_at"], name="subscription_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quanta__gt=0), name="subscription_quanta_positive"),
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0, fee_minor__gte=0),
                name="subscription_amounts_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(currency__in=("USD", "EUR")), name="subscription_currency_supported"
            ),
            models.CheckConstraint(
                condition=~Q(status=SubscriptionStatus.WAITLISTED) | Q(reserved_at__isnull=True),
                name="subscription_waitlisted_holds_nothing",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=SUBSCRIPTION_HOLDING_STATUSES)
                | Q(reserved_at__isnull=False),
                name="subscription_holding_has_reserved_at",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=SUBSCRIPTION_UNFUNDED_STATUSES)
                | Q(expires_at__isnull=False),
                name="subscription_unfunded_expires",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=SUBSCRIPTION_SIGNED_STATUSES) | Q(signed_at__isnull=False),
                name="subscription_signed_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"subscription #{self.pk} ({self.status})"


class SubscriptionStatusChange(models.Model):
    """Append-only: every status a subscription went through, who moved it and why."""

    # (indexed by the (subscription, created_at) index below)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="status_changes", db_index=False
    )
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=SubscriptionStatus.choices)
    # Null: the system (waitlist promotion, the expiry task).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["subscription", "created_at"])]

    def __str__(self) -> str:
        return f"subscription {self.subscription_id}: {self.from_status or '-'} → {self.to_status}"


class SubscriptionAgreement(models.Model):
    """Append-only: one click-to-sign signature of the agreement generated for a subscription
    (a material change to the offering asks for another one). The SHA-256 is over
    `document_text`, exactly as the investor was shown it."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="agreements"
    )
    typed_name = models.CharField(max_length=200)
    signed_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    document_sha256 = models.CharField(max_length=64)
    document_version = models.CharField(max_length=80)
    # The sponsor's template the agreement was generated from (none uploaded: the platform's).
    template_document = models.ForeignKey(
        "offerings.OfferingDocument",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    document_text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["signed_at", "id"]
        indexes = [models.Index(fields=["subscription", "signed_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(document_sha256__regex=r"^[0-9a-f]{64}$"),
                name="subscriptionagreement_sha256_format",
            ),
            models.CheckConstraint(
                condition=~Q(typed_name=""), name="subscriptionagreement_name_given"
            ),
        ]

    def __str__(self) -> str:
        return f"agreement of subscription {self.subscription_id} ({self.document_version})"


# --- payments: funding subscriptions into escrow ----------------------------------------------
#
# Invariants (database constraints unless said otherwise):
# - a payment funds one subscription in its currency; it expects a positive amount; what it
#   received, paid over or short, and what was sent back are never negative, and never more
#   was sent back than received;
# - a provider reference is unique per provider, and so is a provider event id: a webhook
#   delivered twice finds its event recorded and changes nothing;
# - one pending payment per subscription (starting a payment twice returns the same one);
# - a pending or failed payment received nothing and names no ledger entry; a confirmed,
#   returned or refunded one received money and names the entry that moved it
#   external → escrow; an over-payment names the entry that sent the excess straight back;
#   a returned one names the reversal of its funding (and of the excess refund, if any); a
#   refunded one its refund entry;
# - money moves only through `captable/ledger.py` (`captable/payments.py` calls it with
#   deterministic keys, so a replay posts nothing twice); status changes are compare-and-swaps
#   with a history row; events and history rows are append-only (migration 0008).


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending (instructions given, no money yet)"
    CONFIRMED = "confirmed", "Confirmed (money in escrow)"
    RETURNED = "returned", "Returned (the transfer bounced; funding reversed)"
    FAILED = "failed", "Failed (no money arrived)"
    REFUNDED = "refunded", "Refunded (the money went back out)"


# Payments whose money reached escrow (and the funding entry that moved it).
PAYMENT_RECEIVED_STATUSES = (
    PaymentStatus.CONFIRMED,
    PaymentStatus.RETURNED,
    PaymentStatus.REFUNDED,
)


class Payment(models.Model):
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="payments"
    )
    provider = models.CharField(max_length=40)
    provider_reference = models.CharField(max_length=64)
    status = models.CharField(
        max_length=12, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    currency = models.CharField(max_length=3)
    amount_expected_minor = models.BigIntegerField()
    amount_received_minor = models.BigIntegerField(default=0)
    # Over-payment: refunded at once. Under-payment: the shortfall when it was confirmed.
    amount_over_minor = models.BigIntegerField(default=0)
    amount_short_minor = models.BigIntegerField(default=0)
    # Where the money came from (as the provider names the payer's account, e.g. a masked
    # IBAN): refunds go back there.
    payer_account = models.CharField(max_length=100, blank=True)
    # Sent back out to the payer: the excess, and the rest on a refund.
    amount_refunded_minor = models.BigIntegerField(default=0)
    funding_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    excess_refund_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    return_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A bounce after the excess went back: that refund is reversed too (it was never owed).
    excess_return_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    refund_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["subscription", "status"], name="payment_subscription")]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_reference"], name="payment_reference_unique"
            ),
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(status=PaymentStatus.PENDING),
                name="payment_one_pending_per_subscription",
            ),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(currency__in=("USD", "EUR")), name="payment_currency_supported"
            ),
            models.CheckConstraint(
                condition=Q(amount_expected_minor__gt=0)
                & Q(amount_received_minor__gte=0)
                & Q(amount_over_minor__gte=0)
                & Q(amount_short_minor__gte=0)
                & Q(amount_refunded_minor__gte=0)
                & Q(amount_refunded_minor__lte=models.F("amount_received_minor"))
                & Q(amount_over_minor__lte=models.F("amount_received_minor")),
                name="payment_amounts_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=PAYMENT_RECEIVED_STATUSES,
                    amount_received_minor__gt=0,
                    funding_entry__isnull=False,
                    confirmed_at__isnull=False,
                )
                | Q(
                    status__in=(PaymentStatus.PENDING, PaymentStatus.FAILED),
                    amount_received_minor=0,
                    funding_entry__isnull=True,
                ),
                name="payment_received_iff_funded",
            ),
            models.CheckConstraint(
                condition=Q(amount_over_minor=0, excess_refund_entry__isnull=True)
                | Q(amount_over_minor__gt=0, excess_refund_entry__isnull=False),
                name="payment_excess_refunded",
            ),
            models.CheckConstraint(
                condition=Q(status=PaymentStatus.RETURNED, return_entry__isnull=False)
                | (~Q(status=PaymentStatus.RETURNED) & Q(return_entry__isnull=True)),
                name="payment_returned_iff_reversed",
            ),
            models.CheckConstraint(
                condition=Q(
                    status=PaymentStatus.RETURNED,
                    amount_over_minor__gt=0,
                    excess_return_entry__isnull=False,
                )
                | (
                    ~Q(status=PaymentStatus.RETURNED, amount_over_minor__gt=0)
                    & Q(excess_return_entry__isnull=True)
                ),
                name="payment_returned_excess_reversed",
            ),
            models.CheckConstraint(
                condition=Q(status=PaymentStatus.REFUNDED, refund_entry__isnull=False)
                | (~Q(status=PaymentStatus.REFUNDED) & Q(refund_entry__isnull=True)),
                name="payment_refunded_iff_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"payment #{self.pk} {self.provider_reference} ({self.status})"


class PaymentEventType(models.TextChoices):
    CONFIRMED = "payment.confirmed", "Money received"
    RETURNED = "payment.returned", "Transfer returned (bounced)"
    FAILED = "payment.failed", "Transfer failed (no money)"


class PaymentEvent(models.Model):
    """Append-only: one notification from a payment provider, as received (signature
    verified), and what it did. Its (provider, event id) is unique: a repeated delivery is
    recognised and ignored."""

    provider = models.CharField(max_length=40)
    provider_event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=40, choices=PaymentEventType.choices)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    amount_minor = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField()
    outcome = models.TextField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [models.Index(fields=["payment", "received_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_event_id"], name="paymentevent_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(event_type__in=PaymentEventType.values),
                name="paymentevent_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} event {self.provider_event_id} ({self.event_type})"


class PaymentStatusChange(models.Model):
    """Append-only: every status a payment went through, and the event that moved it."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=PaymentStatus.choices)
    event = models.ForeignKey(
        PaymentEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Null: the provider or the system.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["payment", "created_at"])]

    def __str__(self) -> str:
        return f"payment {self.payment_id}: {self.from_status or '-'} → {self.to_status}"


# --- reconfirmation after a material change ------------------------------------------------
#
# Invariants (database constraints):
# - at most one pending reconfirmation per subscription (a newer change supersedes it);
# - a pending one is unresolved; every other status has its `resolved_at`; a reconfirmed one
#   names the agreement signature that reconfirmed it.


class ReconfirmationStatus(models.TextChoices):
    PENDING = "pending"
    RECONFIRMED = "reconfirmed"
    LAPSED = "lapsed", "Lapsed (not reconfirmed in time: cancelled and refunded)"
    SUPERSEDED = "superseded", "Superseded by a later change"
    VOID = "void", "Void (the subscription ended otherwise)"


class SubscriptionReconfirmation(models.Model):
    """A material change (a new version of an offering document) asks the investor to sign
    the new agreement by `due_at`, or the commitment is cancelled and refunded."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="reconfirmations"
    )
    status = models.CharField(
        max_length=12, choices=ReconfirmationStatus.choices, default=ReconfirmationStatus.PENDING
    )
    # The new document version that made the change (None: another material change).
    document = models.ForeignKey(
        "offerings.OfferingDocument",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # The agreement the investor had signed, and the one they are asked to sign.
    previous_agreement_sha256 = models.CharField(max_length=64)
    agreement_sha256 = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField()
    due_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    agreement = models.OneToOneField(
        SubscriptionAgreement,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconfirmation",
    )

    class Meta:
        ordering = ["requested_at", "id"]
        indexes = [models.Index(fields=["status", "due_at"], name="reconfirmation_due")]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(status=ReconfirmationStatus.PENDING),
                name="reconfirmation_one_pending",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ReconfirmationStatus.values),
                name="reconfirmation_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status=ReconfirmationStatus.PENDING, resolved_at__isnull=True)
                | (~Q(status=ReconfirmationStatus.PENDING) & Q(resolved_at__isnull=False)),
                name="reconfirmation_resolved_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status=ReconfirmationStatus.RECONFIRMED, agreement__isnull=False)
                | (~Q(status=ReconfirmationStatus.RECONFIRMED) & Q(agreement__isnull=True)),
                name="reconfirmation_reconfirmed_has_agreement",
            ),
            models.CheckConstraint(
                condition=Q(due_at__gt=models.F("requested_at")),
                name="reconfirmation_due_after_request",
            ),
        ]

    def __str__(self) -> str:
        return f"reconfirmation #{self.pk} of subscription {self.subscription_id} ({self.status})"


# --- closing an offering ----------------------------------------------------------------------
#
# Invariants (database constraints unless said otherwise):
# - four eyes: a close request is decided (approved or rejected) by a staff member other than
#   the one who prepared it; an approved or completed request names its approver, a rejected
#   one gives its reason; a completed one has its completion time;
# - at most one open (pending approval or approved) close request per offering;
# - one closing record per offering: whether the offering is funded (units issued) or failed
#   (every investor refunded) is decided once and never changes, so a close resumed after a
#   crash finishes the close it started; an outcome has its decision time, a completed close
#   its outcome; a close started by a request names it;
# - at most one scheduled early close per offering; its new deadline is before the deadline it
#   replaces and after the notice; a resolved one has its resolution time;
# - status changes are compare-and-swaps in `captable/closing.py`, each close request change
#   with a history row; history rows are append-only (triggers in migration 0009).


class CloseRequestStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved", "Approved (closing under way)"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled", "Cancelled (the offering closed otherwise)"


OPEN_CLOSE_REQUEST_STATUSES = (CloseRequestStatus.PENDING_APPROVAL, CloseRequestStatus.APPROVED)


class CloseRequest(models.Model):
    """Closing an offering, prepared by one staff member and approved by another."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="close_requests")
    status = models.CharField(
        max_length=20,
        choices=CloseRequestStatus.choices,
        default=CloseRequestStatus.PENDING_APPROVAL,
    )
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["offering", "status"], name="closerequest_offering")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CloseRequestStatus.values), name="closerequest_status_valid"
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="closerequest_reason_given"),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                name="closerequest_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True, decided_at__isnull=True)
                | Q(decided_by__isnull=False, decided_at__isnull=False),
                name="closerequest_decision_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=(CloseRequestStatus.APPROVED, CloseRequestStatus.COMPLETED))
                | Q(decided_by__isnull=False),
                name="closerequest_approval_named",
            ),
            models.CheckConstraint(
                condition=~Q(status=CloseRequestStatus.REJECTED)
                | Q(decided_by__isnull=False) & ~Q(decision_reason=""),
                name="closerequest_rejection_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(status=CloseRequestStatus.COMPLETED, completed_at__isnull=False)
                | (~Q(status=CloseRequestStatus.COMPLETED) & Q(completed_at__isnull=True)),
                name="closerequest_completed_has_time",
            ),
            models.UniqueConstraint(
                fields=["offering"],
                condition=Q(status__in=OPEN_CLOSE_REQUEST_STATUSES),
                name="closerequest_one_open_per_offering",
            ),
        ]

    def __str__(self) -> str:
        return f"close request #{self.pk} of offering {self.offering_id} ({self.status})"


class CloseRequestStatusChange(models.Model):
    """Append-only: who moved a close request from what to what, when and why."""

    close_request = models.ForeignKey(
        CloseRequest, on_delete=models.PROTECT, related_name="status_changes"
    )
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, choices=CloseRequestStatus.choices)
    # Null: the system (the close finished, or the deadline closed the offering).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["close_request", "created_at"])]

    def __str__(self) -> str:
        return (
            f"close request {self.close_request_id}: {self.from_status or '-'} → {self.to_status}"
        )


class ClosingOutcome(models.TextChoices):
    FUNDED = "funded", "Funded (subscriptions accepted, units issued)"
    FAILED = "failed", "Failed (every funded subscription refunded)"


class ClosingTrigger(models.TextChoices):
    REQUEST = "request", "A close request approved by a second staff member"
    DEADLINE = "deadline", "The offering's deadline (scheduled task)"


class OfferingClosing(models.Model):
    """One per offering: the close that started as the offering entered `closing`, its outcome
    once decided (and the figures it was decided on), and when it finished.

    The outcome waits while it depends on money that may still be withdrawn (a funded ECSP
    subscription inside its reflection period, or one asked to reconfirm a material change);
    once decided it never changes, so a close resumed after a crash finishes the same close."""

    offering = models.OneToOneField(
        Offering, on_delete=models.PROTECT, related_name="closing_record"
    )
    trigger = models.CharField(max_length=10, choices=ClosingTrigger.choices)
    close_request = models.OneToOneField(
        CloseRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="closing"
    )
    outcome = models.CharField(max_length=10, choices=ClosingOutcome.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # Paid and no longer withdrawable when the outcome was decided, vs the target.
    amount_funded_minor = models.BigIntegerField(default=0)
    target_raise_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # Null: the scheduled task.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome="", decided_at__isnull=True)
                | Q(outcome__in=ClosingOutcome.values, decided_at__isnull=False),
                name="offeringclosing_outcome_decided",
            ),
            models.CheckConstraint(
                condition=Q(trigger=ClosingTrigger.REQUEST, close_request__isnull=False)
                | Q(trigger=ClosingTrigger.DEADLINE, close_request__isnull=True),
                name="offeringclosing_request_named",
            ),
            models.CheckConstraint(
                condition=Q(amount_funded_minor__gte=0, target_raise_minor__gte=0),
                name="offeringclosing_amounts_valid",
            ),
            models.CheckConstraint(
                condition=Q(completed_at__isnull=True)
                | Q(completed_at__gte=models.F("started_at"), decided_at__isnull=False),
                name="offeringclosing_completed_after_decision",
            ),
        ]

    def __str__(self) -> str:
        return f"closing of offering {self.offering_id} ({self.outcome or 'undecided'})"


class EarlyCloseStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (investors notified of the new deadline)"
    CLOSED = "closed", "Closed at the new deadline"
    LAPSED = "lapsed", "Lapsed (target no longer met at the new deadline; old deadline back)"


class EarlyClose(models.Model):
    """A Reg CF early close: notice of a new, earlier deadline, given once the target is met."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="early_closes")
    status = models.CharField(
        max_length=10, choices=EarlyCloseStatus.choices, default=EarlyCloseStatus.SCHEDULED
    )
    original_closes_at = models.DateTimeField()
    closes_at = models.DateTimeField()
    notice_given_at = models.DateTimeField()
    amount_funded_minor = models.BigIntegerField()
    scheduled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["notice_given_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EarlyCloseStatus.values), name="earlyclose_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(closes_at__lt=models.F("original_closes_at"))
                & Q(closes_at__gt=models.F("notice_given_at")),
                name="earlyclose_deadline_between",
            ),
            models.CheckConstraint(
                condition=Q(status=EarlyCloseStatus.SCHEDULED, resolved_at__isnull=True)
                | (~Q(status=EarlyCloseStatus.SCHEDULED) & Q(resolved_at__isnull=False)),
                name="earlyclose_resolved_has_time",
            ),
            models.UniqueConstraint(
                fields=["offering"],
                condition=Q(status=EarlyCloseStatus.SCHEDULED),
                name="earlyclose_one_scheduled_per_offering",
            ),
        ]

    def __str__(self) -> str:
        return f"early close of offering {self.offering_id} ({self.status})"


# --- distributions ------------------------------------------------------------------------------
#
# Invariants (database constraints unless said otherwise):
# - a distribution declares a positive amount; its income part is the whole amount (income), zero
#   (return of capital) or strictly between (mixed); method is pro rata (the only one for now);
# - the record date is on or before the payment date; `record_at` is the end of the record date
#   in the offering's time zone (`captable/distributions.py` computes it);
# - four eyes: whoever approves a distribution is never whoever declared it; an approved,
#   funded or paid distribution names its approver;
# - one payout per holder per distribution (UNIQUE), so a pay run repeated pays nobody twice;
#   each payout's gross = income + return of capital, net = gross - withholding, withholding
#   only on income; a paid payout has its paid time, and its ledger entry unless it is zero;
# - status changes are compare-and-swaps in `captable/distributions.py`, each with a history
#   row; history rows are append-only (triggers in migration 0010).


class DistributionKind(models.TextChoices):
    INCOME = "income"
    RETURN_OF_CAPITAL = "return_of_capital", "Return of capital"
    MIXED = "mixed", "Mixed (income and return of capital)"


class DistributionMethod(models.TextChoices):
    PRO_RATA = "pro_rata", "Pro rata by units of record"
    WATERFALL = "waterfall", "Through the offering's waterfall"


class DistributionStatus(models.TextChoices):
    DRAFT = "draft", "Declared (awaiting approval)"
    APPROVED = "approved"
    FUNDED = "funded", "Funded (cash in the distribution's payable account)"
    PAID = "paid"
    CANCELLED = "cancelled"
    # Undone after it was paid, by reversing entries, prepared and approved by two staff.
    REVERSED = "reversed"


DISTRIBUTION_APPROVED_STATUSES = (
    DistributionStatus.APPROVED,
    DistributionStatus.FUNDED,
    DistributionStatus.PAID,
    DistributionStatus.REVERSED,
)
DISTRIBUTION_PAID_STATUSES = (DistributionStatus.PAID, DistributionStatus.REVERSED)


class Distribution(models.Model):
    """Cash declared by the sponsor for the holders of record of an offering."""

    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="distributions")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=20, choices=DistributionKind.choices)
    # The income part of the amount (all of it for income, none for return of capital).
    income_minor = models.BigIntegerField()
    method = models.CharField(
        max_length=12, choices=DistributionMethod.choices, default=DistributionMethod.PRO_RATA
    )
    record_date = models.DateField()
    # The end of the record date in the offering's time zone: holders of record as of then.
    record_at = models.DateTimeField()
    payment_date = models.DateField()
    status = models.CharField(
        max_length=12, choices=DistributionStatus.choices, default=DistributionStatus.DRAFT
    )
    memo = models.TextField(blank=True)
    declared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    # When the payouts were computed from the holders of record (the pay run started).
    payouts_computed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["offering", "status"], name="distribution_offering")]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="distribution_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(kind=DistributionKind.INCOME, income_minor=models.F("amount_minor"))
                | Q(kind=DistributionKind.RETURN_OF_CAPITAL, income_minor=0)
                | Q(
                    kind=DistributionKind.MIXED,
                    income_minor__gt=0,
                    income_minor__lt=models.F("amount_minor"),
                )
                # A waterfall decides the split itself: the income part is what its payouts'
                # tiers make income (0 until they are computed), everything in between allowed.
                | Q(
                    method=DistributionMethod.WATERFALL,
                    kind=DistributionKind.MIXED,
                    income_minor__gte=0,
                    income_minor__lte=models.F("amount_minor"),
                ),
                name="distribution_income_part_valid",
            ),
            models.CheckConstraint(
                condition=Q(method__in=DistributionMethod.values),
                name="distribution_method_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DistributionStatus.values),
                name="distribution_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(record_date__lte=models.F("payment_date")),
                name="distribution_record_before_payment",
            ),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=models.F("declared_by")),
                name="distribution_four_eyes",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=DISTRIBUTION_APPROVED_STATUSES)
                | Q(approved_by__isnull=False, approved_at__isnull=False),
                name="distribution_approval_named",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=(DistributionStatus.FUNDED, *DISTRIBUTION_PAID_STATUSES))
                | Q(funded_at__isnull=False),
                name="distribution_funded_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DISTRIBUTION_PAID_STATUSES, paid_at__isnull=False)
                | (~Q(status__in=DISTRIBUTION_PAID_STATUSES) & Q(paid_at__isnull=True)),
                name="distribution_paid_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"distribution #{self.pk} of offering {self.offering_id} ({self.status})"


class DistributionStatusChange(models.Model):
    """Append-only: who moved a distribution from what to what, when and why."""

    distribution = models.ForeignKey(
        Distribution, on_delete=models.PROTECT, related_name="status_changes"
    )
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, choices=DistributionStatus.choices)
    # Null: the system (the pay run finished).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["distribution", "created_at"])]

    def __str__(self) -> str:
        return f"distribution {self.distribution_id}: {self.from_status or '-'} → {self.to_status}"


class Payout(models.Model):
    """One holder's share of a distribution: gross (split income / return of capital),
    withholding on the income part, net to the holder's available cash."""

    # No single-column indexes: the unique (distribution, investor) and the (investor,
    # distribution) index lead with them (each payout written and paid updated one less).
    # Checked per statement, not by database foreign keys (migration 0019): a distribution's
    # 100,000 payouts are one COPY, and 200,000 row-level checks at COMMIT cost a second. Both
    # never change, and neither parent can go away while a payout names it: a distribution has
    # its append-only history, and a holder of record has a holding account (real keys).
    distribution = models.ForeignKey(
        Distribution,
        on_delete=models.PROTECT,
        related_name="payouts",
        db_index=False,
        db_constraint=False,
    )
    investor = models.ForeignKey(
        Investor,
        on_delete=models.PROTECT,
        related_name="payouts",
        db_index=False,
        db_constraint=False,
    )
    # Units held at the record date.
    quanta = models.BigIntegerField()
    gross_minor = models.BigIntegerField()
    income_minor = models.BigIntegerField()
    return_of_capital_minor = models.BigIntegerField()
    # The tax form on file when the payout was computed, and the rate it gave.
    tax_form = models.CharField(max_length=8)
    withholding_rate_basis_points = models.PositiveIntegerField()
    withholding_minor = models.BigIntegerField()
    net_minor = models.BigIntegerField()
    # Waterfall only: the sponsor's share of what these units received (to the issuer's promote
    # account), and the breakdown by tier in integer minor units:
    # [{"tier": "preferred_return", "index": 0, "investor_minor": 400, "sponsor_minor": 0}, ...]
    promote_minor = models.BigIntegerField(default=0)
    tiers = models.JSONField(default=list, blank=True)
    # Reinvestment (DRIP): the quanta bought at NAV out of the net and what they cost (the rest
    # of the net is paid in cash), or why nothing was bought for a holder who opted in.
    reinvested_quanta = models.BigIntegerField(default=0)
    reinvested_minor = models.BigIntegerField(default=0)
    reinvestment_note = models.TextField(blank=True)
    # The payout's ledger entry: the one whose idempotency key is this payout's,
    # "distribution:{distribution}:payout:{investor}" — a statement trigger checks it (migration
    # 0018), and since entry keys and (distribution, investor) are both unique, no two payouts
    # can name one entry. Not a database foreign key nor indexed: a pay run sets 100,000 of them
    # in one UPDATE, which then writes no index (entries are append-only; none goes away).
    entry = models.ForeignKey(
        Entry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["distribution", "investor"]
        indexes = [models.Index(fields=["investor", "distribution"], name="payout_investor")]
        constraints = [
            models.UniqueConstraint(
                fields=["distribution", "investor"], name="payout_one_per_holder"
            ),
            models.CheckConstraint(
                condition=Q(quanta__gt=0)
                & Q(income_minor__gte=0)
                & Q(return_of_capital_minor__gte=0)
                & Q(withholding_minor__gte=0)
                & Q(promote_minor__gte=0)
                & Q(withholding_rate_basis_points__lte=10_000),
                name="payout_amounts_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    gross_minor=models.F("income_minor") + models.F("return_of_capital_minor")
                ),
                name="payout_gross_is_income_plus_capital",
            ),
            models.CheckConstraint(
                condition=Q(net_minor=models.F("gross_minor") - models.F("withholding_minor"))
                & Q(withholding_minor__lte=models.F("income_minor")),
                name="payout_net_after_withholding_on_income",
            ),
            models.CheckConstraint(
                condition=Q(paid_at__isnull=True, entry__isnull=True)
                | Q(paid_at__isnull=False, entry__isnull=False)
                | Q(paid_at__isnull=False, gross_minor=0, promote_minor=0),
                name="payout_paid_has_entry",
            ),
            models.CheckConstraint(
                condition=Q(reinvested_quanta__gte=0, reinvested_minor__gte=0)
                & Q(reinvested_minor__lte=models.F("net_minor"))
                & (Q(reinvested_quanta=0, reinvested_minor=0) | Q(reinvested_quanta__gt=0)),
                name="payout_reinvestment_within_net",
            ),
        ]

    def __str__(self) -> str:
        return f"payout of distribution {self.distribution_id} to investor {self.investor_id}"


# --- waterfall terms ------------------------------------------------------------------------
#
# One set of terms per offering (`captable/distribution_waterfall.py` turns them into a
# `captable.waterfall.WaterfallConfig`). Rates and shares are exact decimals between 0 and 1;
# the promote tiers are JSON, each {"sponsor_share": "0.20", "hurdle_kind": "lp_irr" |
# "equity_multiple", "hurdle_value": "0.15"}, the last one without a hurdle. The service refuses
# a change once a waterfall distribution of the offering has computed payouts (replaying the
# history under other terms would no longer reproduce what was paid).


class PrefCompoundingChoice(models.TextChoices):
    SIMPLE = "simple"
    ANNUAL = "annual", "Compounding annually"


class WaterfallTerms(models.Model):
    offering = models.OneToOneField(
        Offering, on_delete=models.PROTECT, related_name="waterfall_terms"
    )
    preferred_return_rate = models.DecimalField(max_digits=9, decimal_places=8)
    pref_compounding = models.CharField(
        max_length=8, choices=PrefCompoundingChoice.choices, default=PrefCompoundingChoice.SIMPLE
    )
    catch_up_sponsor_share = models.DecimalField(max_digits=9, decimal_places=8, default=1)
    sponsor_profit_target = models.DecimalField(max_digits=9, decimal_places=8, default=0)
    promote_tiers = models.JSONField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(preferred_return_rate__gte=0, preferred_return_rate__lte=1)
                & Q(catch_up_sponsor_share__gte=0, catch_up_sponsor_share__lte=1)
                & Q(sponsor_profit_target__gte=0, sponsor_profit_target__lte=1),
                name="waterfall_terms_fractions_valid",
            ),
            models.CheckConstraint(
                condition=Q(pref_compounding__in=PrefCompoundingChoice.values),
                name="waterfall_terms_compounding_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"waterfall terms of offering {self.offering_id}"


# --- withdrawals ----------------------------------------------------------------------------
#
# An investor's available cash paid out to their bank through the payment provider
# (`captable/withdrawals.py`). The money leaves available cash for external when the withdrawal
# is requested (so it cannot be withdrawn twice), and comes back by a second entry if the
# provider reports the transfer failed or returned. Invariants: a positive amount; one
# reference per provider; a failed or returned withdrawal names the entry that brought the money
# back, a pending or paid one has none; each provider event is processed once (UNIQUE).


class WithdrawalStatus(models.TextChoices):
    PENDING = "pending", "Sent to the provider"
    PAID = "paid", "Paid out"
    FAILED = "failed", "Failed (money back in available cash)"
    RETURNED = "returned", "Returned by the bank (money back in available cash)"


WITHDRAWAL_MONEY_BACK_STATUSES = (WithdrawalStatus.FAILED, WithdrawalStatus.RETURNED)


class Withdrawal(models.Model):
    investor = models.ForeignKey(Investor, on_delete=models.PROTECT, related_name="withdrawals")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=10, choices=WithdrawalStatus.choices, default=WithdrawalStatus.PENDING
    )
    provider = models.CharField(max_length=40)
    provider_reference = models.CharField(max_length=64)
    payee_account = models.CharField(max_length=100)
    out_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    back_entry = models.OneToOneField(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["investor", "created_at"], name="withdrawal_investor")]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="withdrawal_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=WithdrawalStatus.values), name="withdrawal_status_valid"
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_reference"], name="withdrawal_reference_unique"
            ),
            models.CheckConstraint(
                condition=Q(status__in=WITHDRAWAL_MONEY_BACK_STATUSES, back_entry__isnull=False)
                | (~Q(status__in=WITHDRAWAL_MONEY_BACK_STATUSES) & Q(back_entry__isnull=True)),
                name="withdrawal_money_back_has_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"withdrawal #{self.pk} of investor {self.investor_id} ({self.status})"


class WithdrawalEvent(models.Model):
    """Append-only: a provider notification about a withdrawal and what it did."""

    provider = models.CharField(max_length=40)
    provider_event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=40)
    withdrawal = models.ForeignKey(Withdrawal, on_delete=models.PROTECT, related_name="events")
    payload = models.JSONField()
    outcome = models.TextField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_event_id"], name="withdrawal_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} for withdrawal {self.withdrawal_id}"


class ReinvestmentElection(models.Model):
    """An investor's choice to reinvest their distributions from one offering (DRIP): each
    payout's net buys newly authorized units at the NAV of the payment day, in whole quanta,
    through the subscription compliance checks; the remainder is paid in cash."""

    investor = models.ForeignKey(
        Investor, on_delete=models.PROTECT, related_name="reinvestment_elections"
    )
    offering = models.ForeignKey(Offering, on_delete=models.PROTECT, related_name="+")
    is_enabled = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["investor", "offering"], name="reinvestment_election_once"
            )
        ]

    def __str__(self) -> str:
        state = "on" if self.is_enabled else "off"
        return f"reinvestment {state} for investor {self.investor_id} in {self.offering_id}"


class DistributionReversal(models.Model):
    """Undoing a paid distribution: prepared by one staff member, approved (and so carried out,
    by reversing entries) by another. Four eyes is a database constraint."""

    distribution = models.OneToOneField(
        Distribution, on_delete=models.PROTECT, related_name="reversal"
    )
    reason = models.TextField()
    prepared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    prepared_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    entries_reversed = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=models.F("prepared_by")),
                name="distribution_reversal_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True, approved_at__isnull=True)
                | Q(approved_by__isnull=False, approved_at__isnull=False),
                name="distribution_reversal_approval_named",
            ),
        ]

    def __str__(self) -> str:
        return f"reversal of distribution {self.distribution_id}"
