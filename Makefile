# acknet — two commands for a person: `make demo` and `make test`.
# Everything a fresh Debian 12 machine needs is installed here, as root.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ACKNET := $(VENV)/bin/acknet
DEBIAN_PACKAGES := iproute2 nftables nginx iperf3 ethtool python3-venv python3-pip procps
SHARED ?= ../shared

.PHONY: setup system-packages venv demo test lint unit integration e2e bench clean

setup: system-packages venv

# Installs only what is missing, so a second run costs nothing.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The shop, live: namespaces, security groups, pods with real sockets; then what can reach what.
demo: setup
	$(ACKNET) validate -f examples/shop
	$(ACKNET) up -f examples/shop
	$(ACKNET) get nodes
	$(ACKNET) get pods
	$(ACKNET) probe --from pods --from ecs/bastion --to ecs/db-1 --to app=web
	@echo
	@echo "The shop is running. Explore it:"
	@echo "  $(ACKNET) get pods | nodes | ecs | vswitches | securitygroups | services"
	@echo "  $(ACKNET) exec ecs/bastion -- python3 -c 'import socket; socket.create_connection((\"192.168.8.10\", 3306), 2)'"
	@echo "  $(ACKNET) probe -o json                 # real packets, every pair and port"
	@echo "  $(ACKNET) check -f examples/shop        # the same answer from the files alone, with reasons"
	@echo "Take it down with:  $(ACKNET) down"

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q tests/unit

test: setup lint
	ACKNET_SHARED=$(abspath $(SHARED)) $(VENV)/bin/pytest -q tests

bench: setup
	$(PY) bench/plan_scale.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
