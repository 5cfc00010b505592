# Set-up and the two entry points the README gives: `make demo` and `make test`.
# Both create ./.venv on first use and install bertkit into it (CPU build of torch).
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch; override with e.g. `make test TORCH=torch` for a CUDA machine.
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/quickstart.sh

# Every test, the `slow` end-to-end runs included; the 15 slowest are listed at the end so
# the suite's time stays visible (`PYTEST_ARGS='-m "not slow"'` for a quick pass).
test: $(VENV)/.installed
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
