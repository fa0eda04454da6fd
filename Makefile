# mrcnn_lite: the two commands a new user runs (see README.md).
#   make workbook  - set up .venv, generate the data, execute every notebook in order, regenerate figures/
#   make test      - set up .venv, generate the data, run the unit tests and pytest --nbval over notebooks/
# Both are idempotent: each step is skipped when its output is newer than its inputs.
# `make workbook` is the one command that rewrites tracked files (the notebooks and figures/); the test
# targets write only to temporary or ignored places and fail if the tests changed the work tree.

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
# matplotlib's font cache belongs to this venv: a cache shared through ~/.cache/matplotlib may list the font
# files of another, since deleted, venv, and every figure then warns "findfont: Font family ... not found"
# on stderr (a notebook output that nbval compares). It is built once, before any notebook runs ($(MPL_OK)).
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/mplconfig
MPL_OK   := $(VENV)/mplconfig/.font-cache-built

.PHONY: all venv data workbook test unit nbval lint table2 clean-data help gpu-check gpu-check-wheels student

all: help

help:
	@echo "make workbook   set up .venv, generate data, execute notebooks/ in place, regenerate figures/"
	@echo "make test       set up .venv, generate data, run tests/ and pytest --nbval notebooks/"
	@echo "make lab        open the workbook in JupyterLab on the project's kernel (127.0.0.1 only, with a token)"
	@echo "make lint       ruff over the library, tests and notebooks"
	@echo "make student    the student release of notebooks 01-07 (no solutions, no outputs) in build/student/"
	@echo "make table2     rerun the paper's Table 2 ablations, 3 seeds (about 2 h on 2 CPU cores; resumable)"
	@echo "                TABLE2_ARGS='--rows c,d --seeds 1' for a part of it"
	@echo "make table2-v2  Table 2 v2 (pretrained trunks, end to end, learning curves; in progress, resumable)"
	@echo "make gpu-check  on a CUDA GPU: build the kernels, CUDA tests, benchmarks, AMP training (<= 8 min)"

venv: $(STAMP)

# Requirements come from pyproject.toml (one source of truth: the dependencies and the `teacher` extra,
# nbgrader, which `make student` and the exercise tests use); torch goes in first so that the
# package (and, later, its C++/CUDA extension) builds against it without build isolation.
$(STAMP): pyproject.toml $(wildcard setup.py mrcnn_lite/csrc/*)
	@$(PYTHON) -c "import sys; assert sys.version_info[:2] == (3, 11), \
	  f'mrcnn_lite needs Python 3.11; $(PYTHON) is {sys.version.split()[0]} (set PYTHON=/path/to/python3.11)'"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "setuptools>=70" wheel $(QUIET_PIP)
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml','rb'))['project']; \
	  print('\n'.join(p['dependencies'] + p['optional-dependencies']['teacher']))" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e . $(QUIET_PIP)
	$(PY) -c "import mrcnn_lite.ops as ops; print('RoI kernels:', ops.backend()['reason'])"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mrcnn_lite)" > /dev/null
	@touch $(STAMP)

data: $(DATA_OK)

$(MPL_OK): $(STAMP)
	@mkdir -p $(dir $@)
	$(PY) -c "import matplotlib, matplotlib.font_manager; print('matplotlib font cache:', matplotlib.get_cachedir())"
	@touch $@

$(DATA_OK): $(STAMP) $(wildcard mrcnn_lite/data/shapes*.py)
	$(PY) -m mrcnn_lite.data.shapes --out $(DATA) --seed $(SEED)

# The notebooks save their figures through mrcnn_lite.workbook.figures_dir(): figures/ for `make workbook`,
# an ignored folder for the test targets (MRCNN_LITE_FIGURES_DIR), so that a test run leaves figures/ alone.
TEST_OUT    := build/test-output
TREE_STATE  := $(TEST_OUT)/tree-before.json
unit nbval test: export MRCNN_LITE_FIGURES_DIR := $(CURDIR)/$(TEST_OUT)/figures
workbook: export MRCNN_LITE_FIGURES_DIR :=
# $(call tree_checked,COMMAND): COMMAND's exit status, or failure listing every file that git sees (tracked,
# or untracked and not ignored) whose state or content COMMAND changed.
tree_checked = $(PY) tests/tree_state.py save $(TREE_STATE) && { $(1); status=$$?; \
	$(PY) tests/tree_state.py check $(TREE_STATE) && exit $$status; }

NBVAL_ARGS := --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-kernel-name python3 \
	--nbval-cell-timeout 1800
# What `make test` runs: every unit test and every notebook (e.g. TEST_PATHS=tests/test_shapes.py for one file).
TEST_PATHS ?= tests $(NOTEBOOKS)

workbook: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(PY) -m mrcnn_lite.workbook $(NOTEBOOKS)

unit: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(call tree_checked,$(PY) -m pytest tests $(PYTEST_ARGS))

nbval: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(call tree_checked,$(PY) -m pytest --nbval $(NOTEBOOKS) $(NBVAL_ARGS) $(PYTEST_ARGS))

test: $(STAMP) $(DATA_OK) $(MPL_OK) lint
	$(call tree_checked,$(PY) -m pytest -rs $(TEST_PATHS) --nbval $(NBVAL_ARGS) $(PYTEST_ARGS))

lint: $(STAMP)
	$(PY) -m ruff check mrcnn_lite tests notebooks benchmarks

# Resumable: finished runs are skipped, so an interrupted `make table2` continues where it stopped.
TABLE2_ARGS ?=
table2: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(PY) -m mrcnn_lite table2 $(TABLE2_ARGS)

# Table 2 v2 (issue #20; README "Table 2, rerun"): trunks pretrained on shape classification, every run
# fine-tuned end to end, AP at four points of the schedule. Resumable from the committed records under
# results/table2_v2/: TABLE2_V2_ARGS='--max-hours 2' runs one part; '--grid quick' is the lab-sized subset.
TABLE2_V2_ARGS ?=
.PHONY: table2-v2 table2-quick
table2-v2: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(PY) -m mrcnn_lite.ablations.runner_v2 $(TABLE2_V2_ARGS)

table2-quick: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(PY) -m mrcnn_lite.ablations.runner_v2 --grid quick $(TABLE2_V2_ARGS)

clean-data:
	rm -rf $(DATA)

# The student release (README "Exercises and the student release"): nbgrader generate_assignment over
# notebooks 01-07 in a course folder, build/nbgrader/ (kept for the teacher: source/, release/, gradebook.db),
# and the released notebooks, with a README, in build/student/. notebooks/ is only read.
STUDENT_OUT ?= build/student
student: $(STAMP)
	$(PY) -m mrcnn_lite.exercises.release --out $(STUDENT_OUT) --course build/nbgrader

# `make lab`: JupyterLab over the checkout, the notebooks on the venv's kernel ("python3", shown as
# "Python 3 (mrcnn_lite)"). It listens on 127.0.0.1 only and keeps Jupyter's token: the server runs any code
# it is sent, so no one who can reach the port may use it without the token (the URL it prints carries it).
# LAB_ARGS adds options, e.g. LAB_ARGS='--no-browser --port=8890'; root (as in a container) adds --allow-root.
LAB_ARGS ?=
.PHONY: lab
lab: $(STAMP) $(DATA_OK) $(MPL_OK)
	$(PY) -m jupyterlab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=$(CURDIR) \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) notebooks/00_overview.ipynb

# ------------------------------------------------------------------------------------------- GPU check
# `make gpu-check` (README "GPU check"): benchmarks/gpu_check.py's stages on the visible CUDA GPU, within
# 8 minutes; results in benchmarks/results/gpu_check_<gpu>.json (and GPU_CHECK_OUT, with the log). Without
# a GPU it says so and succeeds. By default it runs in .venv (created first where missing: needs PyPI).
# GPU_CHECK_PYTHON=python3 uses a Python that already has torch (CUDA), torchvision and pytest instead, as
# on a GPU machine without a package registry; it then installs the wheels of GPU_CHECK_WHEELS (what that
# Python lacks, fetched beforehand by `make gpu-check-wheels`) under build/gpu-check/site.
GPU_CHECK_PYTHON ?=
GPU_CHECK_OUT    ?=
GPU_CHECK_ARGS   ?=
GPU_CHECK_WHEELS ?= .whl
GPU_CHECK_PYVER  ?= 3.12
# Seconds from make's start to the end of the last stage (creating .venv, where needed, counts): 8 minutes
# less a margin for the script's own start and report.
GPU_CHECK_SECONDS ?= 460
GPU_CHECK_T0     := $(shell date +%s)
GPU_CHECK_FLAGS  = --budget $$(( $(GPU_CHECK_SECONDS) - $$(date +%s) + $(GPU_CHECK_T0) )) \
	$(if $(GPU_CHECK_OUT),--out $(GPU_CHECK_OUT)) $(GPU_CHECK_ARGS)

ifeq ($(strip $(GPU_CHECK_PYTHON)),)
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_FLAGS)
else
gpu-check:
	$(GPU_CHECK_PYTHON) benchmarks/gpu_check.py --wheels $(GPU_CHECK_WHEELS) $(GPU_CHECK_FLAGS)
endif

# The wheels GPU_CHECK_PYTHON lacks (on the lent GPU machines: pycocotools), for Python $(GPU_CHECK_PYVER).
gpu-check-wheels: $(STAMP)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_CHECK_PYVER) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d $(GPU_CHECK_WHEELS) $$(grep -i '^pycocotools==' $(VENV)/requirements.txt) $(QUIET_PIP)
	@ls $(GPU_CHECK_WHEELS)
