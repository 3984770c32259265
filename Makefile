# InstaView webhooks API. `make run` serves it locally; `make test` runs every test and check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements-dev.txt | cut -c1-12)
# checkov pins a boto3 that aws-sam-cli cannot share, so it has a venv of its own.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell sha1sum requirements-checkov.txt | cut -c1-12)
EVENT ?= events/http-api/create-seed-example.201.json

.PHONY: help venv run check test fmt-check clippy unit-test lint deploy-check iam-proof openapi fuzz-api fuzz-body build invoke bench bench-pipeline load soak readme-check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	@command -v python3 >/dev/null || { echo "error: python3 is needed (for moto, cargo-lambda, sam)"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP) ## Install the pinned local tools (moto, cargo-lambda, SAM CLI, schemathesis) into .venv

$(CHECKOV_STAMP): requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	rm -f $(CHECKOV_VENV)/.installed-*; touch $@

run: venv ## Start moto, create tables and dev keys, serve http://127.0.0.1:9000/webhooks
	scripts/local-stack.sh

# The fast tier: no emulator, no stack. The unit tests, the in-memory binary (tests/api) and the
# memory half of the stores' conformance suite (in tests/aws, beside its DynamoDB half).
check: venv fmt-check clippy lint-py ## Fast tier for the inner loop: fmt, clippy, unit and in-memory tests, ruff (no emulator)
	cargo test --lib --test api
	cargo test --test aws conformance::memory::
	@echo "make check: passed"

test: venv fmt-check clippy lint-py unit-test lint deploy-check iam-proof openapi fuzz-api readme-check soak ## Every test and check (what CI runs)
	@echo "make test: all checks passed"

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --all-targets -- -D warnings

unit-test: venv ## Unit, handler and integration tests (integration tests start their own moto)
	cargo test --all-targets

lint: venv $(CHECKOV_STAMP) ## Lint the template: cfn-lint with the IAM rules, sam validate, checkov, parliament
	# .cfnlintrc.yaml adds the project's IAM rules (rules/cfn-lint/) to cfn-lint's own.
	$(VENV)/bin/cfn-lint template.yaml
	$(PY) scripts/iam_rules_selftest.py
	AWS_DEFAULT_REGION=eu-central-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template-file template.yaml
	# Skips, each with its reason, are in .checkov.yaml.
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --file template.yaml
	$(PY) scripts/check_policies.py template.yaml

deploy-check: venv ## Create the template as a stack in moto's CloudFormation and run the function on it
	$(PY) scripts/deploy_check.py

iam-proof: venv ## The API, fanout and deliver functions' paths, each under only its role's policy, each action removed in turn
	$(PY) scripts/iam_proof.py

openapi: venv ## Validate openapi.yaml (openapi-spec-validator), then its examples, links and API rules
	$(VENV)/bin/openapi-spec-validator openapi.yaml
	$(PY) scripts/validate_openapi.py openapi.yaml

.PHONY: lint-py
lint-py: venv ## Lint and format check of the Python in scripts/ and rules/ (ruff; pyproject.toml)
	$(VENV)/bin/ruff check scripts rules
	$(VENV)/bin/ruff format --check scripts rules

FUZZ_EXAMPLES ?= 200
fuzz-api: venv ## Schemathesis against a locally served function (FUZZ_EXAMPLES=N per operation)
	MOTO_PORT=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
	API_PORT=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
	scripts/local-stack.sh scripts/fuzz-api.sh $(FUZZ_EXAMPLES)

# Free ports for the stacks that tests start, so that a developer's running `make run` (4566,
# 9000, 9001) never breaks `make test`.
FREE_PORT = $$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
STACK_PORTS = MOTO_PORT=$(FREE_PORT) API_PORT=$(FREE_PORT) PIPELINE_PORT=$(FREE_PORT)

SOAK_SECONDS ?= 180
soak: venv ## make run's stack and pipeline under SOAK_SECONDS=180 of mixed traffic; every event accounted for
	$(STACK_PORTS) PIPELINE=1 RETRY_DELAYS_SECONDS=1,2,2 SOAK_SECONDS=$(SOAK_SECONDS) \
	  scripts/local-stack.sh $(PY) scripts/soak.py

readme-check: venv ## Run the README's walk-through (its `sh walkthrough` blocks) against make run's stack
	$(STACK_PORTS) PIPELINE=1 scripts/local-stack.sh $(PY) scripts/readme_walkthrough.py README.md

build: venv ## Release build of the arm64 Lambda bootstraps (no Docker needed)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 \
	  --bin create-webhook --bin fanout --bin deliver --bin reconcile
	@ls -l target/lambda/*/bootstrap

invoke: venv ## Send EVENT=events/....json to the function `make run` serves
	$(VENV)/bin/cargo-lambda lambda invoke create-webhook -A 127.0.0.1 -P 9000 --data-file $(EVENT)

bench: venv bench-pipeline ## Benchmarks: request path (criterion), cold start, peak memory, the pipeline against a floor (docs/PERFORMANCE.md)
	cargo bench --bench request_path
	# cargo bench leaves a panic=unwind build of the function behind; the scripts rebuild it.
	$(PY) scripts/cold-start.py
	$(PY) scripts/cold-start.py --tls
	$(PY) scripts/peak-rss.py

bench-pipeline: venv ## The pipeline's ingest-to-receiver latency and deliveries/s against moto, beside a POST-only floor
	cargo test --test pipeline handlers::bench_ingest_to_receiver_against_a_floor -- --ignored --nocapture

load: venv ## Pipeline load alone: 1,000 events to 50 receivers (`make test` runs it too), and recover of 2,000 skipped events (`make load` only: ignored), against moto
	cargo test --test pipeline handlers::load_ -- --nocapture --include-ignored

clean:
	cargo clean; rm -rf $(VENV) .run

FUZZ_SECONDS ?= 60
fuzz-body: ## Coverage-guided fuzzing of the body parser (cargo fuzz, FUZZ_SECONDS=60)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
	# No sanitizer: the code under test is safe Rust, so ASan would find nothing but cost speed.
	mkdir -p fuzz/corpus/body_parser
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none body_parser \
	  corpus/body_parser seeds/body_parser -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536
