# The two set-up commands of the README:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench

$(VENV)/.installed: pyproject.toml scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed  ## vec's main job on the embedded default store with simulated DECam data
	$(VENV)/bin/vec --store demo-store demo --fresh

# Two workers, each module on one (--dist loadfile keeps a module's fixtures in one process): most tests
# wait on subprocesses, files and sockets, so two halve the wall time even on a 2-core machine.
TEST_WORKERS ?= 2

test: $(VENV)/.installed  ## the test suite (what CI runs)
	bash scripts/install-browser.sh
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) bench/run_all.py
