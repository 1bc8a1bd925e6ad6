# Fatoura: `make demo` runs the product, `make test` runs the tests.
# Both create .venv (pip install -e ".[test]") when it is missing or pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test i18n-extract i18n-update i18n-compile i18n-check clean

venv: $(STAMP)

# Rebuilt only when the stamp is missing or older than pyproject.toml.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "could not create $(VENV) with $(PYTHON) (on Debian/Ubuntu: apt-get install python3-venv)" >&2; \
	  rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

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
