# RimNet: `make train` runs the main job on the synthetic cohort, `make test` runs the tests.
# Both install what they need into .venv first (idempotent: a stamp file records the install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# GPU users: make install TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1
SCALE ?= paper

.PHONY: install train test test-all bids-validator lint bench reproduce-table3 reproduce-beyond clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

train: install  ## RimNet (phase + FLAIR) on the `default` synthetic cohort (generated on first use)
	$(PY) -m rimnet.train experiment=phase_flair inner_fold=null 'schedule.fixed_epochs=[6,0,0,0]'

test: install  ## fast test suite (what CI runs)
	$(PY) -m pytest -q

test-all: install  ## including the slow end-to-end tests
	$(PY) -m pytest -q -m ""

bids-validator:  ## the official BIDS validator (Node, legacy 1.x) for the BIDS tests, into .ci/node
	npm install --prefix .ci/node --no-audit --no-fund --silent bids-validator@1.15.0

lint: install
	$(VENV)/bin/ruff check rimnet tests benchmarks experiments
	$(VENV)/bin/ruff format --check rimnet tests benchmarks experiments

bench: install
	$(PY) benchmarks/preprocess.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf outputs multirun wandb .pytest_cache

reproduce-table3: install  ## synthesise, preprocess, 24-job sweep + inter-center study, evaluate -> outputs/table3-$(SCALE)/
	$(PY) experiments/reproduce_table3.py --scale $(SCALE)

reproduce-beyond: install  ## phase + T2* + FLAIR, DenseNet, ResNet vs RimNet in Table 3's sweep -> outputs/beyond-$(SCALE)/
	$(PY) experiments/reproduce_beyond.py --scale $(SCALE)
