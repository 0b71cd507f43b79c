# `make book` and `make test` each create or refresh .venv, install everything, fetch the offline
# assets, and then do their job. Nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup assets book test test-slow bench gpu-check clean

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
	$(PY) -m pytest -q tests
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

clean:
	rm -rf _build .pytest_cache
