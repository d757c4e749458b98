# acknet — two commands for a person: `make demo` and `make test`.
# Everything a fresh Debian 12 machine needs is installed here, as root.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ACKNET := $(VENV)/bin/acknet
DEBIAN_PACKAGES := iproute2 nftables nginx openssl iperf3 wrk ethtool curl chromium python3-venv python3-pip procps
SHARED ?= ../shared

.PHONY: setup system-packages venv demo test lint unit integration e2e bench clean

setup: system-packages venv

# Installs only what is missing, so a second run costs nothing. policy-rc.d (Debian's switch for
# maintainer scripts) keeps apt from starting the nginx service on the host: acknet runs its own NGINX
# processes inside the namespaces it makes, never a host service.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  no_start=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && no_start=1; \
	  fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; status=$$?; \
	  if [ -n "$$no_start" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The shop, live: its plan, then namespaces, security groups, pods with real sockets; what can reach
# what; and requests from the emulated Internet through both of its internet CLBs. The NGINX Ingress
# serves https://shop.example.com/ with a certificate of a CA made here (examples/shop/own_ca.py writes
# the shop into $(DEMO) with that certificate in its Secret), so curl verifies it: --cacert, not -k.
DEMO := .demo
DEMO_SLBS := shop/web-public kube-system/nginx-ingress-lb
demo: setup
	$(ACKNET) validate -f examples/shop
	$(ACKNET) plan -f examples/shop
	$(PY) examples/shop/own_ca.py $(DEMO)
	$(ACKNET) up -f $(DEMO)/shop
	$(ACKNET) get nodes
	$(ACKNET) get pods
	$(ACKNET) probe --from pods --from ecs/bastion --to ecs/db-1 --to app=web
	@# The CLBs health-check their backends (the nodes' NodePorts) from 100.64.0.0/10: wait until every
	@# listener of both has a healthy one.
	@for i in $$(seq 60); do \
	  $(ACKNET) get slb -o json | $(PY) -c 'import json, sys; lbs = {i["name"]: i for i in json.load(sys.stdin)["items"]}; sys.exit(not all(any(b["healthy"] for b in li["backends"]) for n in sys.argv[1:] for li in lbs[n]["listeners"]))' $(DEMO_SLBS) && break; \
	  sleep 1; \
	done
	$(ACKNET) get slb
	$(ACKNET) get ingress
	@vip=$$($(ACKNET) get services -o json | $(PY) -c 'import json, sys; print(next(s["status"]["loadBalancer"]["ingress"][0]["ip"] for s in json.load(sys.stdin)["items"] if s["metadata"]["name"] == "web-public"))') && \
	  echo && echo "From the Internet (203.0.113.1) through the internet CLB of shop/web-public, http://$$vip/ :" && \
	  $(ACKNET) exec internet -- curl -sS --fail --max-time 5 --retry 5 --retry-delay 1 --retry-connrefused http://$$vip/ && echo
	@vip=$$($(ACKNET) get ingress -o json | $(PY) -c 'import json, sys; print(next(i["status"]["loadBalancer"]["ingress"][0]["ip"] for i in json.load(sys.stdin)["items"] if i["metadata"]["name"] == "shop"))') && \
	  for path in / /api; do \
	    echo && echo "From the Internet through nginx-ingress-lb ($$vip) and the NGINX Ingress, https://shop.example.com$$path :" && \
	    echo "  curl --cacert $(DEMO)/ca.crt --resolve shop.example.com:443:$$vip https://shop.example.com$$path" && \
	    $(ACKNET) exec internet -- curl -sS --fail --max-time 5 --retry 5 --retry-delay 1 --retry-all-errors \
	      --cacert $(abspath $(DEMO))/ca.crt --resolve shop.example.com:443:$$vip https://shop.example.com$$path && echo || exit 1; \
	  done && \
	  echo && echo "Without --cacert, curl does not trust the shop's certificate (the CA was made just now):" && \
	  if out=$$($(ACKNET) exec internet -- curl -sS -o /dev/null --max-time 5 --resolve shop.example.com:443:$$vip https://shop.example.com/ 2>&1); \
	  then echo "curl trusted it without the CA"; exit 1; else echo "$$out" | head -1; fi
	@echo
	@echo "The shop is running. Explore it:"
	@echo "  $(ACKNET) get pods | nodes | ecs | vswitches | securitygroups | services | slb | ingress"
	@echo "  $(ACKNET) exec ecs/bastion -- python3 -c 'import socket; socket.create_connection((\"192.168.8.10\", 3306), 2)'"
	@echo "  $(ACKNET) probe -o json                 # real packets, every pair and port"
	@echo "  $(ACKNET) check -f examples/shop        # the same answer from the files alone, with reasons"
	@echo "  $(ACKNET) trace ecs/bastion ecs/db-1:3306   # hop by hop: which rule drops it, and what would change that"
	@echo "  $(ACKNET) graph -f examples/shop -o shop.html   # topology, allowed flows and a reachability heat-map"
	@echo "  $(ACKNET) exec internet -- curl -s http://198.51.100.2/   # a client on the emulated Internet"
	@echo "  $(ACKNET) exec internet -- curl --cacert $(DEMO)/ca.crt --resolve shop.example.com:443:198.51.100.1 https://shop.example.com/api"
	@echo "Take it down with:  $(ACKNET) down"

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q tests/unit

# Two test files at a time, one per core (pytest-xdist): the live ones mostly wait on timers and
# health windows, and each builds its own named emulation, so they share the machine without sharing
# state. --durations says where the time goes.
test: setup lint
	ACKNET_SHARED=$(abspath $(SHARED)) $(VENV)/bin/pytest -q -n 2 --dist loadfile --durations=15 tests

bench: setup
	$(PY) bench/plan_scale.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
