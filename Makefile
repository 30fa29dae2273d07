# Brickbook — every target installs what it needs first (Python packages from uv.lock,
# Debian packages for WeasyPrint), so a fresh machine needs only `make demo` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON := .venv/bin/python
UV := python3 -m uv
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_WORKERS ?= 2

.PHONY: help setup demo serve test lint typecheck migrations-check check-deploy \
        test-postgres test-sqlite bench stress worker clean

help:
	@echo "make demo   - set up and run the demo on the embedded default (SQLite, in-process tasks)"
	@echo "make test   - set up and run lint, types, migrations check, PostgreSQL and SQLite suites"
	@echo "make serve  - gunicorn + Celery worker + beat on PostgreSQL and Redis, http://127.0.0.1:8000/api/v1/docs"
	@echo "make bench  - benchmarks (figures and their ratio to a ceiling measured in the same run)"

setup: .venv/.synced
	@bash scripts/system-deps.sh

.venv/.synced: uv.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

demo: setup
	$(PYTHON) manage.py migrate --noinput -v 0
	$(PYTHON) manage.py demo

serve: setup
	bash scripts/serve.sh

worker: setup
	.venv/bin/celery -A config worker -B --loglevel=INFO

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: setup
	.venv/bin/mypy .

migrations-check: setup
	$(PYTHON) manage.py makemigrations --check --dry-run

check-deploy: setup
	BRICKBOOK_ENV=production SECRET_KEY="$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	FIELD_ENCRYPTION_KEYS="$$($(PYTHON) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
	LEDGER_HMAC_KEY=check-deploy PAYMENTS_WEBHOOK_SECRET=check-deploy \
	ALLOWED_HOSTS=brickbook.example.com \
	$(PYTHON) manage.py check --deploy --fail-level WARNING

test-postgres: setup
	@echo "=== test suite on PostgreSQL (the reference) ==="
	bash scripts/with-postgres.sh $(PYTHON) -m pytest -n $(PYTEST_WORKERS) -q -m "not stress"

test-sqlite: setup
	@echo "=== tests marked 'embedded' on SQLite (the embedded default) ==="
	DATABASE_URL="sqlite:///$(CURDIR)/var/test-embedded.sqlite3" BRICKBOOK_EXPECT_DB=sqlite \
	$(PYTHON) -m pytest -m embedded -q

test: lint typecheck migrations-check check-deploy test-postgres test-sqlite

bench: setup
	bash scripts/with-postgres.sh bash benchmarks/run_all.sh

stress: setup
	HYPOTHESIS_PROFILE=stress bash scripts/with-postgres.sh $(PYTHON) -m pytest -q -m stress

clean:
	rm -rf var/ .venv/ .mypy_cache .ruff_cache
