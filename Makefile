# KnowledgeTree — the commands people look for. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.bootstrapped
# Your copy of inventories/production (docs/DEPLOYMENT.md); required by the targets below.
INVENTORY ?=
# FAST=1: Mitogen's strategy (about twice as fast; opt-in because ansible-core warns that
# third-party strategy plugins may be removed). CI and the default run use the plain one.
ifneq ($(filter-out 0,$(FAST)),)
ANSIBLE_STRATEGY_ENV = ANSIBLE_STRATEGY=mitogen_linear \
  ANSIBLE_STRATEGY_PLUGINS=$(firstword $(wildcard $(VENV)/lib/python3*/site-packages/ansible_mitogen/plugins/strategy))
endif
ANSIBLE_ENV = ANSIBLE_CONFIG=ansible/ansible.cfg $(ANSIBLE_STRATEGY_ENV)
# The vault password, the same way for every target: VAULT_PASSWORD_FILE=path (or
# ANSIBLE_VAULT_PASSWORD_FILE in the environment) for runs without a prompt; otherwise
# it is asked for when the inventory has a vault.yml. ANSIBLE_ARGS adds any other option.
VAULT_ARGS = $(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE),$(if \
  $(ANSIBLE_VAULT_PASSWORD_FILE),,$(if $(wildcard $(INVENTORY)/group_vars/all/vault.yml),--ask-vault-pass)))
PLAYBOOK   = $(ANSIBLE_ENV) $(BIN)/ansible-playbook -i $(INVENTORY) $(VAULT_ARGS)
TESTHOST  ?= kt-test
TESTHOST_IP ?= 10.99.0.11

.PHONY: help setup demo dev test test-app test-infra lint format bench \
        provision deploy rollback status backup restore restore-pitr vault-create vault-edit vault-view inventory-given \
        testhost-up testhost-down lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements-dev.lock scripts/bootstrap.sh
	VENV=$(VENV) scripts/bootstrap.sh
	@touch $@

setup: $(STAMP) ## Install apt packages and the Python venv (done by every target that needs it)

demo: $(STAMP) ## Create a local Debian 13 test host, provision it, deploy the app, load samples
	scripts/demo.sh

dev: $(STAMP) ## Run the API locally on an embedded Postgres (http://127.0.0.1:8000/docs)
	$(BIN)/python scripts/dev.py

test: $(STAMP) ## Run every test suite: lint, app, infra (provisions a real test host)
	$(MAKE) lint
	$(MAKE) test-app
	$(MAKE) test-frontend
	$(MAKE) test-infra

test-app: $(STAMP) ## App tests against an embedded Postgres + pgvector
	$(BIN)/pytest tests/app

# The browser app's packages, installed from the committed lock files when they change.
NODE_STAMP := frontend/node_modules/.package-lock.json
E2E_STAMP  := tests/e2e/node_modules/.package-lock.json
.PHONY: test-frontend
$(NODE_STAMP): frontend/package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || \
	  { echo "Node.js 20 or newer is needed for frontend/ (node --version: $$(node --version))" >&2; exit 2; }
	cd frontend && npm ci --no-audit --no-fund
$(E2E_STAMP): tests/e2e/package-lock.json
	cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

test-frontend: $(STAMP) $(NODE_STAMP) $(E2E_STAMP) ## Vitest component tests, then Playwright in Chromium against the real API
	cd frontend && npx vitest run
	cd tests/e2e && npx playwright test

test-infra: $(STAMP) $(E2E_STAMP) ## The infra suites on real test hosts and the compose path, in three lanes at once (scripts/test_infra.sh)
	scripts/test_infra.sh

lint: $(STAMP) ## ruff, yamllint, ansible-lint (production profile)
	$(BIN)/ruff check app tests bench scripts compose
	$(BIN)/ruff format --check app tests bench scripts compose
	$(MAKE) lint-frontend
	$(BIN)/yamllint -s ansible roles inventories docker-compose.prod.yml tests/compose
	PATH="$(abspath $(BIN)):$$PATH" ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-lint  # profile: .ansible-lint

.PHONY: lint-frontend api-client
api-client: $(STAMP) $(NODE_STAMP) ## After an API change: regenerate the browser app's typed client
	$(BIN)/python scripts/openapi_schema.py
	cd frontend && npm run gen:api

lint-frontend: $(STAMP) $(NODE_STAMP) $(E2E_STAMP) ## Biome, tsc, and the typed API client matches the API's schema
	$(BIN)/python scripts/openapi_schema.py --check
	cd frontend && npm run lint
	cd tests/e2e && ../../frontend/node_modules/.bin/tsc -p .
	frontend/node_modules/.bin/biome check --config-path=frontend/biome.json tests/e2e/*.ts bench/*.mjs

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix app tests bench scripts
	$(BIN)/ruff format app tests bench scripts

bench: $(STAMP) ## Run the app benchmarks; record the figures in docs/BENCHMARKS.md
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/retrieval_latency.py
	$(BIN)/python bench/query_embedding.py
	$(BIN)/python bench/auth_timing.py
	$(BIN)/python bench/chat_latency.py
	$(BIN)/python bench/concurrent_streams.py
	$(BIN)/python bench/quota_overhead.py
	@# Through nginx and TLS on a provisioned test host (kt-bench, made or reused; as root).
	bench/load_host.sh

inventory-given:
	@test -n "$(INVENTORY)" || { echo "make $(MAKECMDGOALS): which servers? Add INVENTORY=inventories/<yours>," \
	  "your copy of inventories/production (docs/DEPLOYMENT.md section 2)." >&2; exit 2; }
	@test -f "$(INVENTORY)/hosts.yml" || { echo "make $(MAKECMDGOALS): $(INVENTORY)/hosts.yml does not exist;" \
	  "INVENTORY must be an inventory folder (a copy of inventories/production)." >&2; exit 2; }

# Each run deploys the release it built (build_release.sh prints its folder), not
# whatever build/release points at by the time the playbook reads it.
provision: inventory-given $(STAMP) ## Provision the hosts of INVENTORY and deploy (FAST=1: Mitogen)
	release=$$(scripts/build_release.sh) && \
	  $(PLAYBOOK) ansible/site.yml -e app_release_source=$$release $(ANSIBLE_ARGS)

deploy: inventory-given $(STAMP) ## Build a release and deploy it blue-green to INVENTORY (no downtime)
	release=$$(scripts/build_release.sh) && \
	  $(PLAYBOOK) ansible/deploy.yml -e app_release_source=$$release $(ANSIBLE_ARGS)

rollback: inventory-given $(STAMP) ## Switch INVENTORY back to the previous release (ROLLBACK_TO=<release>: that one)
	$(PLAYBOOK) ansible/rollback.yml $(if $(ROLLBACK_TO),-e rollback_to=$(ROLLBACK_TO)) $(ANSIBLE_ARGS)

status: inventory-given $(STAMP) ## Live release and colour, /readyz, certificate, disk, backups of INVENTORY
	$(PLAYBOOK) ansible/status.yml $(ANSIBLE_ARGS)

backup: inventory-given $(STAMP) ## Back up the backup hosts of INVENTORY now (restic; roles/restic)
	$(PLAYBOOK) ansible/backup.yml $(ANSIBLE_ARGS)

restore: inventory-given $(STAMP) ## Restore the latest backup run (ANSIBLE_ARGS="-e restore_snapshot=... -e restore_force=true")
	$(PLAYBOOK) ansible/restore.yml $(ANSIBLE_ARGS)

restore-pitr: inventory-given $(STAMP) ## Restore the database to a moment (ANSIBLE_ARGS="-e restore_to_time='YYYY-MM-DD HH:MM:SS+00'")
	$(PLAYBOOK) ansible/restore_pitr.yml $(ANSIBLE_ARGS)

vault-create: inventory-given $(STAMP) ## Create INVENTORY's encrypted vault.yml with generated secrets
	scripts/vault.sh create $(INVENTORY)

vault-edit: inventory-given $(STAMP) ## Edit INVENTORY's vault.yml (decrypted, in your EDITOR)
	scripts/vault.sh edit $(INVENTORY)

vault-view: inventory-given $(STAMP) ## Print INVENTORY's vault.yml decrypted
	scripts/vault.sh view $(INVENTORY)

testhost-up: ## Boot the disposable Debian 13 test host (TESTHOST, TESTHOST_IP)
	scripts/testhost.sh up $(TESTHOST) $(TESTHOST_IP)

testhost-down: ## Destroy the test host
	scripts/testhost.sh down $(TESTHOST)

# Docker Compose instead of Ansible (docs/DEPLOYMENT.md, "With Docker Compose");
# the env file is compose/knowledgetree.env unless KT_COMPOSE_ENV says otherwise.
.PHONY: compose-up compose-update compose-down test-compose
compose-up: $(STAMP) ## Docker Compose: build the release and images, start, wait until healthy
	scripts/compose.sh up

compose-update: $(STAMP) ## Docker Compose: the new release's app beside the old one, nginx switched once it is healthy, the old one drained
	scripts/compose.sh update

compose-down: ## Docker Compose: stop and remove the containers (the volumes stay)
	scripts/compose.sh down

test-compose: $(STAMP) ## The compose test: its own dockerd, images, pebble TLS, journey, down/up, update under load (root)
	scripts/compose_dockerd.sh install
	scripts/testhost.sh network
	$(BIN)/pytest tests/compose

lock: $(STAMP) ## Regenerate requirements.lock and requirements-dev.lock from pyproject.toml
	scripts/lock.sh

clean: ## Remove caches (not the venv)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
