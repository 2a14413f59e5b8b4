# leapresearch: the two commands a newcomer runs are `make report` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= demo
SEED   ?= 20210401
DATA   ?= data_raw/$(SCALE)
OUT    ?= outputs/$(SCALE)
PARAMS ?=
LAYOUT ?= contract
# The committed notebooks are executed under one OpenBLAS kernel and checked (nbval) under
# another, so an output that depends on the kernel fails the check (README: reproducibility).
NOTEBOOKS_CORETYPE ?= SkylakeX
NBVAL_CORETYPE     ?= Prescott

.PHONY: setup report test lint format nbval notebooks lab lock demo-data clean-venv hooks

setup: $(STAMP)  ## build .venv from the lock file (idempotent)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo-data: setup  ## simulate the data for SCALE into DATA unless it is there (LAYOUT=extract: state layout)
	@test -f $(DATA)/students.csv -o -f $(DATA)/students.parquet -o -f $(DATA)/PSIS_OCTOBER_ROSTER.csv || \
	  $(BIN)/leapresearch simulate --out $(DATA) --scale $(SCALE) --seed $(SEED) --layout $(LAYOUT) \
	    --truth outputs/truth/$(SCALE).json

report: demo-data  ## the yearly report on SCALE data (demo by default)
	$(BIN)/leapresearch validate $(DATA) $(if $(PARAMS),--params $(PARAMS))
	$(BIN)/leapresearch run --data $(DATA) --out $(OUT) --overwrite $(if $(PARAMS),--params $(PARAMS))

test: demo-data  ## lint, the test suite, and nbval on the committed notebooks
	$(BIN)/ruff check leapresearch tests benchmarks scripts validation
	$(BIN)/ruff format --check leapresearch tests benchmarks scripts validation
	$(BIN)/python scripts/check_no_data_staged.py --tracked
	$(BIN)/python -m pytest -n 2 --dist loadfile tests
	$(MAKE) nbval

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

lab: demo-data  ## JupyterLab on notebooks/ with the project's environment (makes the demo data first)
	$(BIN)/jupyter lab --notebook-dir=notebooks

lock:  ## re-pin requirements.lock from a fresh resolve of pyproject.toml
	rm -rf /tmp/leap-lock && $(PYTHON) -m venv /tmp/leap-lock
	/tmp/leap-lock/bin/pip install --quiet ".[dev]"
	{ head -3 requirements.lock; /tmp/leap-lock/bin/pip freeze --exclude leapresearch; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	$(BIN)/python scripts/sync_environment.py

clean-venv:
	rm -rf $(VENV)

notebooks: demo-data  ## re-execute the committed notebooks on the demo data (after numbers move)
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do \
	  OPENBLAS_CORETYPE=$(NOTEBOOKS_CORETYPE) \
	    $(BIN)/papermill --cwd notebooks -k python3 --no-progress-bar "$$nb" "$$nb" || exit 1; \
	done
