# Isotope — the two commands: `make run` and `make test`. See README.md.
.PHONY: run test lint format bootstrap assets infra-up infra-down infra-status cluster image migrate seed

run:            ## set everything up and start the portal on :8000 (SQLite)
	scripts/run.sh

test:           ## the whole suite on PostgreSQL, every tier, browser tests included
	scripts/test.sh

bootstrap:      ## install system packages, the virtualenv and npm libraries
	scripts/bootstrap.sh --test

assets:
	scripts/assets.sh

lint:           ## ruff check + ruff format --check (fails on either)
	scripts/lint.sh

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

infra-up:       ## libvirt node1+node2, tiny guest image, Kubernetes control plane
	python3 -m tools.infra up

infra-down:
	python3 -m tools.infra down

infra-status:
	python3 -m tools.infra status

cluster:        ## only the local Kubernetes control plane
	python3 -m tools.infra k8s up

image:          ## only the tiny guest image
	python3 -m tools.infra image up
