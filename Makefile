# leapresearch: the two commands a newcomer runs are `make report` and `make test`.
# The Python that builds .venv: `make setup PYTHON=/path/to/python3.X` names one; otherwise
# the first of PYTHON_CANDIDATES on PATH that runs and is a supported version (requires-python
# in pyproject.toml; tests/test_environment.py keeps the two in agreement). Looked up once,
# and only when a recipe uses it (setup, when .venv is out of date).
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON_CANDIDATES := python3.11 python3.12 python3.13 python3
PYTHON_CHECK := import sys; v = sys.version_info; ok = f"{v[0]}.{v[1]}" in "$(SUPPORTED_PYTHONS)".split(); \
  ok or print(f"make: {sys.executable} is Python {v[0]}.{v[1]}.{v[2]}; leapresearch supports \
  $(SUPPORTED_PYTHONS)", file=sys.stderr); sys.exit(not ok)
PYTHON ?= $(eval PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
  $$p -c '$(PYTHON_CHECK)' >/dev/null 2>&1 && { command -v $$p; break; }; done))$(PYTHON)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= demo
SEED   ?= 20210401
DATA   ?= data_raw/$(SCALE)
OUT    ?= outputs/$(SCALE)
PARAMS ?=
LAYOUT ?= contract
VINTAGE ?=
# `make report PARAMS=VINTAGE`: the vintage's own data_dir and outputs/VINTAGE (run's
# defaults), never the demo's; DATA=... or OUT=... given with it still win.
DATA_GIVEN := $(filter command line environment,$(origin DATA))
OUT_GIVEN  := $(filter command line environment,$(origin OUT))
REPORT_DATA = $(if $(PARAMS),$(if $(DATA_GIVEN),$(DATA)),$(DATA))
REPORT_OUT  = $(if $(PARAMS),$(if $(OUT_GIVEN),$(OUT)),$(OUT))
# The committed notebooks are executed under one OpenBLAS kernel and checked (nbval) under
# another, so an output that depends on the kernel fails the check (README: reproducibility).
# The executing kernel is the widest this CPU runs (a forced AVX-512 kernel on a CPU without
# it kills the notebook's kernel with an invalid instruction).
NOTEBOOKS_CORETYPE ?= $(shell if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then echo SkylakeX; \
  elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then echo Haswell; else echo Nehalem; fi)
NBVAL_CORETYPE     ?= Prescott

.PHONY: setup report test suite lint format nbval notebooks lab lock demo-data clean-venv hooks

setup: $(STAMP)  ## build .venv from the lock file (idempotent)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { \
	  if [ -z "$(PYTHON)" ]; then \
	    echo "make setup: no supported Python found: none of $(PYTHON_CANDIDATES) on PATH is a" \
	      "supported Python ($(SUPPORTED_PYTHONS)). Install one, or name it: make setup PYTHON=/path/to/python3.X" >&2; \
	    exit 1; \
	  fi; \
	  "$(PYTHON)" -c '$(PYTHON_CHECK)' || exit 1; \
	  echo "make setup: $(VENV) with $(PYTHON) (Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'))"; \
	  "$(PYTHON)" -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "make setup: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt install python3-venv," \
	      "or python3.X-venv for the version)" >&2; exit 1; }; \
	}
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo-data: setup  ## simulate the data for SCALE into DATA unless it is there (LAYOUT=extract: state layout)
	@test -f $(DATA)/students.csv -o -f $(DATA)/students.parquet -o -f $(DATA)/PSIS_OCTOBER_ROSTER.csv || \
	  $(BIN)/leapresearch simulate --out $(DATA) --scale $(SCALE) --seed $(SEED) --layout $(LAYOUT) \
	    --truth outputs/truth/$(SCALE).json

report: $(if $(REPORT_DATA),demo-data,setup)  ## the yearly report on SCALE data (demo by default; PARAMS=VINTAGE: that vintage's data and outputs/VINTAGE)
	$(BIN)/leapresearch validate $(REPORT_DATA) $(if $(PARAMS),--params $(PARAMS))
	$(BIN)/leapresearch run $(if $(REPORT_DATA),--data $(REPORT_DATA)) \
	  $(if $(REPORT_OUT),--out $(REPORT_OUT)) --overwrite $(if $(PARAMS),--params $(PARAMS))

test: demo-data  ## lint, the test suite, and nbval on the committed notebooks
	$(BIN)/ruff check leapresearch tests benchmarks scripts validation
	$(BIN)/ruff format --check leapresearch tests benchmarks scripts validation
	$(BIN)/python scripts/check_no_data_staged.py --tracked
	@# nbval beside the suite: its notebooks compute on one core most of the time (the suite
	@# keeps both busy); each part's output is printed whole when it ends (--output-sync)
	$(MAKE) --no-print-directory -j2 --output-sync=target suite nbval

suite: demo-data  ## the test suite alone (pytest, two processes)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder tests

nbval: demo-data  ## check the committed notebook outputs against a fresh execution
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  OPENBLAS_CORETYPE=$(NBVAL_CORETYPE) $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    -p no:cacheprovider notebooks; \
	else echo "nbval: no notebooks committed yet"; fi

lint: setup
	$(BIN)/ruff check leapresearch tests benchmarks scripts validation

format: setup
	$(BIN)/ruff format leapresearch tests benchmarks scripts validation
	$(BIN)/ruff check --fix leapresearch tests benchmarks scripts validation

hooks:  ## install the git pre-commit hook that refuses staged data files
	python3 scripts/check_no_data_staged.py --install

# VINTAGE=...: copies of the notebooks with that vintage's parameters injected (papermill
# --prepare-only; outputs cleared, not executed) in outputs/lab/VINTAGE/ (outside the run folder, which a
# new run replaces); a copy already there is kept, with the analyst's edits.
lab: $(if $(VINTAGE),setup,demo-data)  ## JupyterLab on notebooks/ (demo data), or VINTAGE=...: on that vintage
ifeq ($(VINTAGE),)
	$(BIN)/jupyter lab --notebook-dir=notebooks
else
	@test -f params/$(VINTAGE).yaml || { echo "make lab: no params/$(VINTAGE).yaml" \
	  "(leapresearch new-year $(VINTAGE) --data FOLDER writes it)" >&2; exit 1; }
	@mkdir -p outputs/lab/$(VINTAGE)
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do \
	  copy="outputs/lab/$(VINTAGE)/$$(basename $$nb)"; test -f "$$copy" && continue; \
	  $(BIN)/papermill --prepare-only --no-progress-bar -p vintage "$(VINTAGE)" "$$nb" "$$copy" \
	    && $(BIN)/jupyter nbconvert --clear-output --inplace --log-level=WARN "$$copy" || exit 1; \
	done
	$(BIN)/jupyter lab --notebook-dir=outputs/lab/$(VINTAGE)
endif

# One lock for every supported Python (uv's universal resolution: a package whose version must
# differ between Pythons gets one line per version range, with an environment marker). The
# versions already in requirements.lock are kept unless pyproject.toml no longer allows them;
# a package new to pyproject.toml gets its newest release. UPGRADE=1: a fresh resolve, every
# pin moved to its newest release.
lock: setup  ## re-pin requirements.lock from pyproject.toml, for every supported Python (UPGRADE=1: newest releases)
	grep '^#' requirements.lock > requirements.lock.header
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --no-annotate --no-header \
	  --quiet $(if $(UPGRADE),--upgrade) -o requirements.lock
	cat requirements.lock.header requirements.lock > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm requirements.lock.header
	$(BIN)/python scripts/sync_environment.py

clean-venv:
	rm -rf $(VENV)

notebooks: demo-data  ## re-execute the committed notebooks on the demo data (after numbers move)
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do \
	  OPENBLAS_CORETYPE=$(NOTEBOOKS_CORETYPE) \
	    $(BIN)/papermill --cwd notebooks -k python3 --no-progress-bar "$$nb" "$$nb" || exit 1; \
	done
