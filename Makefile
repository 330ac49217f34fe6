# Two commands from nothing:  `make demo`  (set-up + cohort training on the bundled MRI cohort)
#                             `make test`  (set-up + the test suite, slow end-to-end runs included; what CI runs)
#                             `make test-fast`  (the same without the tests marked slow: for iterating)
#                             `make test-min`  (the tests against the dependency floors: constraints-min.txt)
# torch is pinned in the same pip call as everything else: an unpinned torch would pull a 5 GB CUDA build.
# environment.yml installs the same pin (tests/test_packaging.py checks it).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The floors of pyproject.toml, each pinned with `==` (torch stays at $(TORCH): see constraints-min.txt).
MIN_VENV  ?= .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
# What `make test-min` runs: every CLI path and one-line error, every shipped config, the models and the
# data sources (MIN_TESTS=tests for the whole suite).
MIN_TESTS ?= tests/test_cli.py tests/test_configs.py tests/test_errors.py tests/models tests/data tests/test_packaging.py

.PHONY: install demo test test-fast test-min bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# → runs/mri/cohort/siren.  Safe to run again: an interrupted run is resumed, a complete one is kept as it is
# (`--ckpt_path=last` starts a new run only where there is no last.ckpt yet; tests/test_cli.py runs it twice).
demo: $(STAMP)
	$(BIN)/python -m inr_lightning fit --config configs/cohort/siren.yaml --ckpt_path=last

# One pytest worker per core (pytest-xdist); a worker that runs out of tests takes queued ones from the other.
XDIST ?= -n auto --dist worksteal

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests -m "not slow"

$(MIN_STAMP): pyproject.toml constraints-min.txt
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q -c constraints-min.txt "$(TORCH)" -e ".[test]"
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -m pytest -q $(XDIST) $(MIN_TESTS)

# Benchmarks are not tests (they time things): every row at full size, or every row family at tiny sizes.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --no-compile

clean:
	rm -rf $(VENV) $(MIN_VENV) runs .pytest_cache
