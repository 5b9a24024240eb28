# Two commands for a fresh machine: `make demo` and `make test`. Each sets itself up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# CPU build of torch first, so that nothing pulls the CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[ml,dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the dashboard's browser test (Playwright drives it; no browser is ever downloaded).
# Quiet, and a no-op when it is there; without root or apt the test skips and says why.
chromium:
	@test -x /usr/bin/chromium || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "chromium could not be installed: tests/dashboard/test_browser.py will skip" >&2; }

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/scrimp demo

bench: $(STAMP)
	$(PY) bench/sim_throughput.py
	$(PY) bench/gateway_overhead.py
	$(PY) bench/promptcache_agent.py

lint: $(STAMP)
	$(VENV)/bin/ruff check scrimp tests bench

.PHONY: install chromium test demo bench lint
