# Fatoura: `make demo` runs the product, `make test` runs the tests.
# Both create .venv (pip install -e ".[test]", pinned by the lock files) when it is missing or
# when pyproject.toml or a lock file changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCKS := requirements.lock requirements-test.lock
PYTEST_ARGS ?=

.PHONY: venv lock demo test i18n-extract i18n-update i18n-compile i18n-check clean

venv: $(STAMP)

# Rebuilt only when the stamp is missing or older than pyproject.toml or a lock file.
$(STAMP): pyproject.toml $(LOCKS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "could not create $(VENV) with $(PYTHON) (on Debian/Ubuntu: apt-get install python3-venv)" >&2; \
	  rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet $(foreach f,$(LOCKS),-c $(f)) -e ".[test]"
	@touch $(STAMP)

# Resolve pyproject.toml's ranges afresh in a clean virtual environment and write the exact
# versions: the application's to requirements.lock, the test extras' to requirements-test.lock.
lock:
	rm -rf build/lock && $(PYTHON) -m venv build/lock/app && $(PYTHON) -m venv build/lock/all
	build/lock/app/bin/python -m pip install --quiet .
	build/lock/all/bin/python -m pip install --quiet ".[test]"
	{ sed -n '1,3p' requirements.lock; build/lock/app/bin/python -m pip freeze --exclude fatoura; } > build/lock/app.txt
	{ sed -n '1,2p' requirements-test.lock; build/lock/all/bin/python -m pip freeze --exclude fatoura \
	  | grep -vxiFf build/lock/app.txt; } > build/lock/test.txt
	mv build/lock/app.txt requirements.lock && mv build/lock/test.txt requirements-test.lock
	rm -rf build/lock

demo: $(STAMP)
	$(BIN)/fatoura demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

i18n-extract: $(STAMP)
	$(BIN)/fatoura i18n extract

i18n-update: $(STAMP)
	$(BIN)/fatoura i18n update

i18n-compile: $(STAMP)
	$(BIN)/fatoura i18n compile

i18n-check: $(STAMP)
	$(BIN)/fatoura i18n check

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find locales -name '*.mo' -delete 2>/dev/null || true
