# mrcnn_lite: the two commands a new user runs (see README.md).
#   make workbook  - set up .venv, generate the data, execute every notebook in order, regenerate figures/
#   make test      - set up .venv, generate the data, run the unit tests and pytest --nbval over notebooks/
# Both are idempotent: each step is skipped when its output is newer than its inputs.

PYTHON   ?= $(shell command -v python3.11 || command -v python3)
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.mrcnn_lite-installed
SEED     ?= 0
DATA     := data/shapes
DATA_OK  := $(DATA)/annotations/instances_val2017.json
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
PYTEST_ARGS ?=

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip on machines with a local wheel mirror warns once per missing mirror folder; keep the log readable.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

export CUDA_HOME ?= /usr/local/cuda
export PYTHONHASHSEED := 0

.PHONY: all venv data workbook test unit nbval lint table2 clean-data help

all: help

help:
	@echo "make workbook   set up .venv, generate data, execute notebooks/ in place, regenerate figures/"
	@echo "make test       set up .venv, generate data, run tests/ and pytest --nbval notebooks/"
	@echo "make lint       ruff over the library, tests and notebooks"
	@echo "make table2     rerun the paper's Table 2 ablations, 3 seeds (about 2 h on 2 CPU cores; resumable)"
	@echo "                TABLE2_ARGS='--rows c,d --seeds 1' for a part of it"

venv: $(STAMP)

# Requirements come from pyproject.toml (one source of truth); torch goes in first so that the
# package (and, later, its C++/CUDA extension) builds against it without build isolation.
$(STAMP): pyproject.toml $(wildcard setup.py mrcnn_lite/csrc/*)
	@$(PYTHON) -c "import sys; assert sys.version_info[:2] == (3, 11), \
	  f'mrcnn_lite needs Python 3.11; $(PYTHON) is {sys.version.split()[0]} (set PYTHON=/path/to/python3.11)'"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "setuptools>=70" wheel $(QUIET_PIP)
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e . $(QUIET_PIP)
	$(PY) -c "import mrcnn_lite.ops as ops; print('RoI kernels:', ops.backend()['reason'])"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mrcnn_lite)" > /dev/null
	@touch $(STAMP)

data: $(DATA_OK)

$(DATA_OK): $(STAMP) mrcnn_lite/data/shapes.py
	$(PY) -m mrcnn_lite.data.shapes --out $(DATA) --seed $(SEED)

workbook: $(STAMP) $(DATA_OK)
	$(PY) -m mrcnn_lite.workbook $(NOTEBOOKS)

unit: $(STAMP) $(DATA_OK)
	$(PY) -m pytest tests $(PYTEST_ARGS)

nbval: $(STAMP) $(DATA_OK)
	$(PY) -m pytest --nbval $(NOTEBOOKS) --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
	  --nbval-kernel-name python3 --nbval-cell-timeout 1800 $(PYTEST_ARGS)

test: $(STAMP) $(DATA_OK) lint
	$(PY) -m pytest -rs tests $(NOTEBOOKS) --nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
	  --nbval-kernel-name python3 --nbval-cell-timeout 1800 $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check mrcnn_lite tests notebooks benchmarks

# Resumable: finished runs are skipped, so an interrupted `make table2` continues where it stopped.
TABLE2_ARGS ?=
table2: $(STAMP) $(DATA_OK)
	$(PY) -m mrcnn_lite table2 $(TABLE2_ARGS)

clean-data:
	rm -rf $(DATA)
