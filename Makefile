# Set-up and entry points. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_MNIST_DIR ?= $(or $(JAXVAE_FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)
WORKDIR ?= runs/default
CONFIG ?= experiments/configs/default.py

.PHONY: env data run test lint bench-env bench clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Fashion-MNIST's original IDX files, from Debian's dataset-fashion-mnist package.
data:
	@if [ -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz" ] || [ -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte" ]; then \
	  echo "Fashion-MNIST found in $(FASHION_MNIST_DIR)"; \
	else \
	  echo "Fashion-MNIST not in $(FASHION_MNIST_DIR): installing Debian's dataset-fashion-mnist"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q dataset-fashion-mnist; \
	fi

run: env data
	$(BIN)/jaxvae train --config $(CONFIG) --workdir $(WORKDIR)

# One pytest worker per core, at most 4 (each test process already sees 4 forced host devices);
# a module's tests stay on one worker (tests/conftest.py groups them, the slowest first), so its
# module fixtures are built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: env data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder tests

lint: env
	$(BIN)/ruff check src tests experiments benchmarks
	$(BIN)/ruff format --check src tests experiments benchmarks

# PyTorch reference for docs/benchmarks.md: its own environment, never a dependency of jaxvae.
bench-env: $(VENV)-torch/.installed

$(VENV)-torch/.installed:
	test -x $(VENV)-torch/bin/python || $(PYTHON) -m venv $(VENV)-torch
	$(VENV)-torch/bin/python -m pip install -q torch==2.13.0 numpy
	touch $@

# docs/benchmarks.md: every figure there not marked one-off comes from these commands, and the
# last one makes docs/conv-formulations.md's (about 30 minutes on 2 cores; run nothing else
# meanwhile). Results go to benchmarks/results/.
RESULTS := benchmarks/results
bench: env bench-env data
	mkdir -p $(RESULTS)
	$(BIN)/python benchmarks/compare.py --model mlp --rounds 15 --output $(RESULTS)/compare_mlp.json
	$(BIN)/python benchmarks/compare.py --model conv --rounds 3 --output $(RESULTS)/compare_conv.json
	$(BIN)/jaxvae bench --config experiments/configs/peer_mlp.py --iwae-num 50 > $(RESULTS)/bench_mlp.json
	$(BIN)/jaxvae bench --config experiments/configs/peer_conv.py --iwae-num 20 > $(RESULTS)/bench_conv.json
	$(BIN)/jaxvae bench --config experiments/configs/default.py --iwae-num 20 > $(RESULTS)/bench_default.json
	$(BIN)/python benchmarks/iwae.py --workdir runs/bench_peer_mlp --output $(RESULTS)/iwae.json
	$(BIN)/python benchmarks/conv_formulations.py --output $(RESULTS)/conv_formulations.json

clean:
	rm -rf $(VENV) $(VENV)-torch build dist src/*.egg-info
