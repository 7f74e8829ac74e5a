# Two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine by itself.
# torch goes in first, pinned: on this project's CPU machines that is a local CPU wheel; every other
# requirement is a range that the installed torch satisfies, so pip never swaps in another (CUDA) build.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# the tour's parameters: offline (tiny model, digits); `make demo PARAMS=configs/notebooks/gpu.yaml` for a real model
PARAMS ?= configs/notebooks/offline.yaml
PY     := $(VENV)/bin/python
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup browser demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/difflab demo --params $(PARAMS)

test: setup browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# The web UI's end-to-end test drives Debian's chromium through Playwright (Playwright's own browser download is
# not reachable from these machines). Installed with apt-get when missing and possible; else that test is skipped.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make: chromium could not be installed; the browser test will be skipped"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
