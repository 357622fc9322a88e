# ModelKiln — two commands on a fresh machine: `make run` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# PyTorch is installed first so the open `torch>=2.4` in pyproject.toml is already met.
# On the project's development and CI machines `torch==2.13.0` resolves to a CPU build
# kept on local disk. Elsewhere plain PyPI serves the large CUDA build for Linux: pass
# TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build (as the Dockerfile does),
# or keep the default on a GPU host.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/modelkiln serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check app worker ml tests bench
	$(BIN)/ruff format --check app worker ml tests bench
	$(BIN)/mypy app worker

# The dashboard test drives Debian's Chromium (never a browser downloaded by a test tool).
browser:
	@command -v chromium >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

test: install lint browser
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .modelkiln .pytest_cache .mypy_cache .ruff_cache
