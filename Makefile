# Two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine by itself.
# torch goes in first, pinned: on this project's CPU machines that is a local CPU wheel; every other
# requirement is a range that the installed torch satisfies, so pip never swaps in another (CUDA) build.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/difflab demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
