# `make run` / `make test` create .venv on first use and install the project into it.
# torch is pinned first so nothing later pulls a CUDA build onto a CPU-only machine; on a CPU
# machine with internet use e.g. PIP_TORCH_FLAGS="--index-url https://download.pytorch.org/whl/cpu".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP_TORCH_FLAGS ?=
ARGS ?=
PYTEST_ARGS ?=
# test processes (pytest-xdist): auto is one per CPU; 0 runs the tests in this process (pdb, -x)
PYTEST_WORKERS ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test test-all bench report plan reproduce-paper sweeps docs clean
.DEFAULT_GOAL := help

help:  ## this list of targets (variables: PROFILE, LAUNCHER, OUTPUT, ARGS, TORCH, PIP_TORCH_FLAGS, PYTEST_ARGS, PYTEST_WORKERS)
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:[^#]*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

PROFILE ?= smoke
# Hydra launcher of reproduce-paper: batched trains a study's MLP runs that differ only in seed,
# width or label noise as one batched model and runs every other job by itself (docs/batched_training.md);
# LAUNCHER=basic is Hydra's one-job-at-a-time launcher, LAUNCHER=local / slurm the project's others.
LAUNCHER ?= batched
# where runs are written and read: ACTIVATION_HASH_OUTPUT when set (as for `python -m activation_hash`)
OUTPUT ?= $(or $(ACTIVATION_HASH_OUTPUT),outputs)
DOWNLOAD ?=
# every experiment file is a study: a new study is one file in conf/experiment/
STUDIES ?= $(sort $(basename $(notdir $(wildcard conf/experiment/*.yaml))))

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_TORCH_FLAGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" -c constraints.txt
	touch $@

install: $(STAMP)  ## create .venv: torch $(TORCH) first, then the project with the tested versions (constraints.txt)

run: $(STAMP)  ## python -m activation_hash $(ARGS)
	$(BIN)/python -m activation_hash $(ARGS)

test: $(STAMP)  ## the default test run (slow tests deselected)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-all: $(STAMP)  ## every test, slow ones included
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)  ## every benchmark under bench/
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

report: $(STAMP)  ## table, figures, phase charts and report.md from the $(PROFILE) runs under $(OUTPUT)/studies
	$(BIN)/python -m activation_hash.analysis report $(OUTPUT)/studies/*/$(PROFILE) --out reports/$(PROFILE)

# the plan of $(STUDIES) under $(PROFILE) and $(LAUNCHER); DEVICE_PROFILE=FILE: another device's measured costs
PLAN = $(BIN)/python -m activation_hash.plan profile=$(PROFILE) $(foreach s,$(STUDIES),+experiment=$(s)) \
	$(if $(LAUNCHER),hydra/launcher=$(LAUNCHER)) $(if $(DEVICE_PROFILE),--device-profile $(DEVICE_PROFILE)) $(ARGS)

plan: $(STAMP)  ## runs, units, steps, captures, code volume, RAM/disk per unit and time of every study (no training)
	$(PLAN)

reproduce-paper: $(STAMP)  ## every study (PROFILE=smoke|paper, LAUNCHER=batched|basic|local|...), then the report; reruns skip finished runs; DOWNLOAD=1 fetches the data first
	$(BIN)/python -m activation_hash.data.check --profile $(PROFILE) $(if $(DOWNLOAD),--download) $(foreach a,$(ARGS),--set $(a)) $(STUDIES)
	ACTIVATION_HASH_OUTPUT=$(OUTPUT) $(PLAN) --check   # prints the plan; refuses (exit 1) a unit that will not fit this machine's RAM or disk
	for s in $(STUDIES); do \
	  ACTIVATION_HASH_OUTPUT=$(OUTPUT) $(BIN)/python -m activation_hash +experiment=$$s profile=$(PROFILE) -m $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER)) $(ARGS) || exit 1; \
	done
	$(BIN)/python -m activation_hash.analysis report $(OUTPUT)/studies/*/$(PROFILE) --out reports/$(PROFILE)

sweeps: $(STAMP)  ## regenerate the W&B sweep files from conf/experiment
	$(BIN)/python -m activation_hash.wandb_sweeps

docs: $(STAMP)  ## build the documentation site into site/ (needs the [docs] extra)
	$(BIN)/python -m pip install --quiet -e ".[docs]" -c constraints.txt
	$(BIN)/python -m mkdocs build --strict

clean:  ## remove .venv and build outputs
	rm -rf $(VENV) build dist *.egg-info
