# fusnet: two commands on a fresh machine (Python 3.11, no GPU needed)
#   make demo   train + evaluate Multi-FusNet on the embedded synthetic default (smoke recipe)
#   make test   the whole test suite (unit, real-data, notebooks)
# Both create and use the project virtual environment .venv themselves.
#   make reproduce PROFILE=smoke|cpu|paper [NOTEBOOKS="01 03"] [DATA_ROOT=/data]
#               run the paper's experiments (notebooks/) into results/<notebook>/<profile>/
#   make lab [LAB_PORT=8888]
#               JupyterLab on notebooks/ (127.0.0.1 only, behind a token; prints the URL to open)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fusnet-installed
# torch/torchvision pinned to the releases this project is tested with.
TORCH  := torch==2.14.1 torchvision==0.29.1
PROFILE ?= smoke
# The notebooks' kernel (their metadata's kernelspec): this .venv's Python, registered inside
# .venv (--sys-prefix), so JupyterLab, papermill and nbconvert start it without choosing.
KERNEL := fusnet
KERNEL_DISPLAY := Python 3 (fusnet)

.PHONY: venv lock demo test test-fast lint reproduce notebooks lab clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -c requirements-lock.txt -e '.[dev,notebooks]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL_DISPLAY)"
	touch $@

# Re-pin requirements-lock.txt to what .venv has now (after a deliberate upgrade; then
# `make notebooks` to refresh the saved smoke outputs that nbval checks).
lock: venv
	{ sed -n '1,3p' requirements-lock.txt; $(BIN)/python -m pip freeze --exclude-editable; } > requirements-lock.tmp
	mv requirements-lock.tmp requirements-lock.txt

# The smoke profile's training recipe (fusnet.experiments.recipes.RECIPES["smoke"]) on the
# synthetic default, at two code lengths; then the metrics of the 48-bit run's codes.
demo: venv
	$(BIN)/fusnet train --profile smoke --bits 12 48 --output-dir runs/demo --resume
	$(BIN)/fusnet evaluate --codes runs/demo/bits48/codes.npz

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not notebook"

reproduce: venv
	$(BIN)/fusnet reproduce --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT))

# Re-execute the committed notebooks in place with their defaults (the smoke profile):
# the saved outputs are what `pytest --nbval-lax` compares against, with the CPU kernels
# capped at AVX2 as the tests cap them (tests/same-kernels.env, read by conftest.py too).
# The progress bars' widget models are not stored in them (hundreds per notebook, no use saved).
SAME_KERNELS := $(shell grep -v '^\#' tests/same-kernels.env)
notebooks: venv
	env $(SAME_KERNELS) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.store_widget_state=False \
		notebooks/*.ipynb

# JupyterLab on notebooks/ in this environment, for a person at this machine: 127.0.0.1 only,
# always behind a token (scripts/lab.sh), the URL to open printed; LAB_PORT picks the port.
lab: venv
	LAB_PORT="$(LAB_PORT)" bash scripts/lab.sh

# ruff, and the architecture contract in pyproject.toml ([tool.importlinter]: layers, no circles).
lint: venv
	$(BIN)/ruff check fusnet tests benchmarks scripts
	$(BIN)/lint-imports

clean:
	rm -rf runs .pytest_cache
