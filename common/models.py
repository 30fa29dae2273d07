"""Platform tables shared by every app: users, API tokens, rate counters, the outbox.

Invariants kept here:
- an API token is stored only as a SHA-256 hash; the clear token is shown once, at issue;
- a rate counter row is (scope, key, window) unique, incremented atomically in SQL;
- an outbox row is written in the same transaction as the change it belongs to and is
  marked dispatched only after Celery accepted it, so a crash in between re-sends it.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class User(AbstractUser):
    """Email is the login. Roles: staff = `is_staff`; investor and sponsor come from their
    profiles in `investors/` and `offerings/`."""

    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    def __str__(self) -> str:
        return self.email


class ApiToken(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    # First characters of the clear token, so a user can tell their tokens apart.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="apitoken_expires_after_created",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class RateCounter(models.Model):
    scope = models.CharField(max_length=40)
    key = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "key", "window_start"], name="ratecounter_unique_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} @ {self.window_start:%Y-%m-%d %H:%M} = {self.count}"


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DISPATCHED = "dispatched"

    task_name = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict)
    # Optional: the same logical job enqueued twice is stored once.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                name="outbox_pending_idx",
                condition=models.Q(status="pending"),
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="pending", dispatched_at__isnull=True)
                | models.Q(status="dispatched", dispatched_at__isnull=False),
                name="outbox_dispatched_has_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.task_name} #{self.pk} ({self.status})"


class IdempotencyRecord(models.Model):
    """The first response to a POST sent with an `Idempotency-Key` header, per user and key
    (see `common/idempotency.py`). The row is inserted and completed in the transaction of the
    operation it guards, so a committed row always carries its response: a crash or an error
    leaves no row at all, never one stuck "in progress". Rows older than
    `IDEMPOTENCY_KEY_TTL_HOURS` are purged."""

    # (indexed by the unique (user, key) constraint, which leads with it)
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="idempotency_records", db_index=False
    )
    key = models.CharField(max_length=255)
    # SHA-256 of method, path and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.TextField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The exact JSON text sent the first time, so a replay is byte-identical (jsonb would
    # reorder keys).
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_user_key"),
            models.CheckConstraint(
                condition=models.Q(response_status__isnull=True)
                | models.Q(response_status__gte=100, response_status__lte=599),
                name="idempotency_response_status_http",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id}, {self.method} {self.path} → {self.response_status})"
