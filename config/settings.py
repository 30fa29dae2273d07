"""Brickbook settings: one file, everything from the environment (12-factor).

`BRICKBOOK_ENV=production` switches on the hardened mode that `manage.py check --deploy`
accepts; it refuses to start without the secrets it needs instead of falling back to
development defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("BRICKBOOK_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when BRICKBOOK_ENV=production")
    return value


IS_PRODUCTION = env_str("BRICKBOOK_ENV", "development") == "production"
# Only the benchmark's own server mounts its bare ceiling endpoint.
BENCH_ENDPOINTS = env_bool("BRICKBOOK_BENCH_ENDPOINTS") and not IS_PRODUCTION

# Development keys are public on purpose: they only ever protect a local SQLite file.
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-brickbook-not-for-production-use-0000"
_DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZDA="
_DEV_LEDGER_HMAC_KEY = "dev-only-ledger-seal-key"

if IS_PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY")
    FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS") or [
        env_required("FIELD_ENCRYPTION_KEYS")
    ]
    LEDGER_HMAC_KEY = env_required("LEDGER_HMAC_KEY")
else:
    SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY)
    # Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
    FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", _DEV_FIELD_ENCRYPTION_KEY)
    LEDGER_HMAC_KEY = env_str("LEDGER_HMAC_KEY", _DEV_LEDGER_HMAC_KEY)

DEBUG = env_bool("DEBUG", default=not IS_PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if IS_PRODUCTION else "localhost,127.0.0.1,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djmoney",
    "ninja",
    "common",
    "offerings",
    "investors",
    "captable",
    "reports",
    "django_htmx",
    "portal",
]

# The common.middleware ones wrap Django's (sessions, session user, messages) and
# django-htmx's, and skip them for the JSON API (/api/: bearer tokens, no cookies, no pages).
# CSRF stays as Django's (deploy checks look for it by name; API views are CSRF-exempt).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "common.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "common.middleware.AuthenticationMiddleware",
    "common.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "common.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
# Embedded default: a SQLite file under var/, WAL journal and BEGIN IMMEDIATE so that writers
# queue on the database lock instead of failing half-way with "database is locked".
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'brickbook.sqlite3'}")
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 600)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED_STATEMENTS", True
):
    # Django turns psycopg's prepared statements off (prepare_threshold None) for poolers, and
    # then psycopg ignores even an explicit prepare=True. Django's own queries go through
    # client-side-binding cursors, which never prepare; the ledger's hot statements ask for
    # preparation explicitly (captable/ledger.py `_fetch`), so a threshold no query reaches
    # by repetition enables exactly those. Behind a pooler that cannot keep prepared
    # statements per client (PgBouncer in transaction mode before 1.21), set
    # DATABASE_PREPARED_STATEMENTS=0.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 1_000_000_000
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
            ),
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -----------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
API_TOKEN_TTL_SECONDS = env_int("API_TOKEN_TTL_SECONDS", 12 * 3600)
LOGIN_FAILURES_MAX = env_int("LOGIN_FAILURES_MAX", 5)
LOGIN_FAILURES_WINDOW_SECONDS = env_int("LOGIN_FAILURES_WINDOW_SECONDS", 900)
# Per-user limits on expensive writes (common/ratelimit.py): scope -> (calls, window seconds).
# Generous: a person never subscribes twice a second; a runaway script is stopped.
RATE_LIMIT_WINDOW_SECONDS = env_int("RATE_LIMIT_WINDOW_SECONDS", 60)
RATE_LIMITS = {
    "subscribe": (env_int("RATE_LIMIT_SUBSCRIBE_PER_WINDOW", 120), RATE_LIMIT_WINDOW_SECONDS),
    "transfer": (env_int("RATE_LIMIT_TRANSFER_PER_WINDOW", 60), RATE_LIMIT_WINDOW_SECONDS),
}
# Shared store of those counters: Redis when one is configured, else the database.
_BROKER_URL = env_str("CELERY_BROKER_URL")
RATE_LIMIT_REDIS_URL = (
    env_str("RATE_LIMIT_REDIS_URL")
    or env_str("REDIS_URL")
    or (_BROKER_URL if _BROKER_URL.startswith(("redis://", "rediss://")) else "")
)
# The portal (server-rendered pages, session auth).
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "portal:marketplace"

# --- i18n -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Several web servers and workers share one object store: an S3-compatible bucket through
# django-storages when AWS_STORAGE_BUCKET_NAME is set (boto3 reads AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY itself); statements are private, so links are signed and expire.
if env_str("AWS_STORAGE_BUCKET_NAME"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- API ------------------------------------------------------------------------------------
NINJA_PAGINATION_PER_PAGE = 50
NINJA_PAGINATION_MAX_LIMIT = 100
# The anonymous offerings page is identical for everyone: cache it briefly (0 turns it off).
OFFERINGS_PUBLIC_LIST_CACHE_SECONDS = env_int("OFFERINGS_PUBLIC_LIST_CACHE_SECONDS", 2)

# --- money ----------------------------------------------------------------------------------
CURRENCIES = ("USD", "EUR")
DEFAULT_CURRENCY = "USD"

# --- cap-table interchange ------------------------------------------------------------------
# The official Open Cap Format JSON schemas that `manage.py export_ocf` validates against.
# The official Open Cap Format schemas, vendored unmodified (see captable/ocf_spec/README.md).
OCF_SCHEMA_DIR = Path(env_str("OCF_SCHEMA_DIR") or BASE_DIR / "captable" / "ocf_spec" / "schema")

# --- background work ------------------------------------------------------------------------
# No broker: Celery executes tasks in-process (eager), which is the embedded default.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
# A task not acknowledged within this long (its worker died) is delivered again (Redis).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 3600)
}
# Tamper-evidence seals: with a broker, beat seals committed entries in batches every few
# seconds (ledger writes never wait on a chain); without one, each commit seals at once.
LEDGER_SEAL_INTERVAL_SECONDS = float(env_int("LEDGER_SEAL_INTERVAL_SECONDS", 2))
LEDGER_SEAL_ON_COMMIT = env_bool("LEDGER_SEAL_ON_COMMIT", CELERY_TASK_ALWAYS_EAGER)
# Database connections a distribution's batched pay run (PostgreSQL) pays its batches on at once.
PAY_RUN_CONNECTIONS = env_int("PAY_RUN_CONNECTIONS", 2)
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {"task": "common.outbox_relay", "schedule": 5.0},
    "open-due-offerings": {"task": "offerings.open_due", "schedule": 60.0},
    "seal-ledger": {"task": "captable.seal_ledger", "schedule": LEDGER_SEAL_INTERVAL_SECONDS},
    "purge-idempotency-keys": {"task": "common.idempotency_purge", "schedule": 3600.0},
    "expire-subscriptions": {"task": "captable.expire_subscriptions", "schedule": 300.0},
    "expire-reconfirmations": {"task": "captable.expire_reconfirmations", "schedule": 300.0},
    "close-due-offerings": {"task": "captable.close_due_offerings", "schedule": 60.0},
}
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 500)
# Payments: the shared secret of the provider's signed webhook (HMAC-SHA256), and the provider.
PAYMENTS_WEBHOOK_SECRET = (
    env_required("PAYMENTS_WEBHOOK_SECRET")
    if IS_PRODUCTION
    else env_str("PAYMENTS_WEBHOOK_SECRET", "dev-only-payments-webhook-secret")
)
PAYMENTS_PROVIDER = env_str("PAYMENTS_PROVIDER", "simulated_bank_transfer")

# Statements: what the PDFs print about the platform; the cut-off time zone for cash.
REPORTS_PLATFORM_NAME = env_str("REPORTS_PLATFORM_NAME", "Brickbook")
REPORTS_PLATFORM_ADDRESS = env_str("REPORTS_PLATFORM_ADDRESS", "")
REPORTS_TIME_ZONE = env_str("REPORTS_TIME_ZONE", "UTC")

# Unfunded subscription reservations release their units after this long.
SUBSCRIPTION_RESERVATION_TTL_HOURS = env_int("SUBSCRIPTION_RESERVATION_TTL_HOURS", 72)

# --- email ----------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "statements@brickbook.invalid")

# --- security -------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
