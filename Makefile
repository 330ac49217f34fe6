# Two commands from nothing:  `make demo`  (set-up + cohort training on the bundled MRI cohort)
#                             `make test`  (set-up + the test suite; what CI runs)
# torch is pinned in the same pip call as everything else: an unpinned torch would pull a 5 GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m inr_lightning fit --config configs/cohort/siren.yaml   # → runs/mri/cohort/siren

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
