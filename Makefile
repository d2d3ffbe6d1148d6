# The README's two commands: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.avlearn-installed
DEV_STAMP := $(VENV)/.avlearn-dev-installed
DEMO_OUT ?= outputs/demo
# Parallel test workers; CI machines have 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test lint install clean browser docs

# The demo installs the package only; the tests and linters add the dev extras on top.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e .
	@touch $@

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m avlearn demo --out $(DEMO_OUT)

# One OpenMP thread per test worker: the workers already fill the cores, and the run-safety
# tests fork the test process, which deadlocks in libgomp once it has started its threads.
test: $(DEV_STAMP) browser
	$(PY) tests/real_media.py
	OMP_NUM_THREADS=1 AVLEARN_REQUIRE_REAL_MEDIA=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=10

# The browser test of `avlearn serve` drives Debian's chromium (never a downloaded build): install it
# once where it is missing and apt-get can (CI: Debian, root; about a minute). Elsewhere that one test skips.
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
		|| echo "make: chromium could not be installed: the browser test of avlearn serve will skip"; \
	fi

# The documentation site (mkdocs.yml) into outputs/site/; offline, warnings are errors.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir outputs/site

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check avlearn data_prep tests benchmarks demos
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .cache outputs .pytest_cache .mypy_cache .ruff_cache
