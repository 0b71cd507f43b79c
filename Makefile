# `make book` and `make test` each create or refresh .venv, install everything, fetch the offline
# assets, and then do their job. Nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= book
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup assets book test test-slow bench gpu-check clean check-book browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fusion-book)"
	touch $(STAMP)

setup: $(STAMP)

assets: setup
	$(PY) -m fusion_lib assets fetch

book: assets
	$(PY) -m fusion_lib.book build

test: assets
	$(VENV)/bin/ruff check fusion_lib tests
	$(VENV)/bin/ruff format --check fusion_lib tests
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q -m paper tests
	FUSION_PROFILE=ci $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

test-slow: assets
	$(PY) -m pytest -q -m slow tests

bench: assets
	$(PY) -m fusion_lib.bench features
	$(PY) -m fusion_lib.bench fusion

# On a CUDA machine, <= 3 min: ImageNet check on the GPU, fp16 vs CPU fp32 features and probe accuracy,
# pipeline/raw ratio and one MoE trained on CUDA. Without a CUDA device it says so and fails.
gpu-check: assets
	$(PY) -m fusion_lib.bench gpu

# A headless Chromium for check-book: the one found on the PATH, else Debian's `chromium` package.
browser: setup
	@$(PY) -c "from fusion_lib.book.tooling.browser_check import find_browser; print('browser:', find_browser())" 2>/dev/null \
	  || { echo "installing Debian's chromium"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# Build the book with PROFILE (unchanged notebooks are reused), then load every page in headless
# Chromium, offline: no console errors, every image loaded, every formula typeset, search works.
check-book: assets browser
	$(PY) -m fusion_lib.book build --profile $(PROFILE)
	$(PY) -m fusion_lib.book.tooling.browser_check _build/html

clean:
	rm -rf _build .pytest_cache
