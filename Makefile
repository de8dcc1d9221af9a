# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# One torch thread keeps CPU timings stable on small machines (2-thread timings spike 10-100x).
DEMO_ARGS ?= --threads 1
PY := $(VENV)/bin/python
BASE := $(VENV)/.diffprof-base
DEV := $(VENV)/.diffprof-dev

# `make test`: the whole suite on 2 workers (the CI machine's cores), with line coverage that must
# not fall below the baseline (pyproject.toml [tool.coverage.report]); `make test-fast` leaves out
# the tests marked slow (> ~10 s each) and coverage, for quick local loops.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
# loadscope: a module's tests run in one worker, so its module-scoped fixtures (built pipelines, a
# calibration run, a Ray cluster) are built once, not once per worker. (loadgroup's xdist_group
# marks are ignored with pytest 9.2: pytest-xdist issue 1386.) --no-loadscope-reorder: modules go out
# in the order tests/conftest.py collects them (most slow tests first), not by their number of tests,
# which sent the Ray module last and left one worker idle for its last ~36 s.
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: install install-dev demo test test-fast clean

# torch first, from TORCH_SPEC, so GPU users choose the build; then diffprof (editable).
$(BASE): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	@touch $(BASE)

# the test tools (pytest, xdist, coverage) and optional backends the tests exercise (pandas, scikit-image, ray)
$(DEV): $(BASE)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(DEV)

install: $(BASE)
install-dev: $(DEV)

demo: install
	$(VENV)/bin/diffprof bench $(DEMO_ARGS)

test: install-dev
	$(PYTEST) --cov --cov-report= --durations=15 $(PYTEST_ARGS)

test-fast: install-dev
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .coverage .coverage.*
