# vqkeras: the two commands a new user needs are `make report` and `make test`.
# Both create .venv and install everything (Debian packages too, when root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
EXPERIMENTS ?= experiments/nsynth-minimal.yaml experiments/fashion-mnist-minimal.yaml
DATA_DIR ?= data/nsynth-rendered
# Debian packages: the Fashion-MNIST set in IDX format (tests), and the
# baseline codecs of the rate-distortion benchmark.
DEBIAN_PACKAGES := dataset-fashion-mnist opus-tools lame

.PHONY: all install system-deps data report test test-jax test-tensorflow bench default-model clean

all: report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench,notebook]"
	# tinysoundfont's pyaudio dependency needs PortAudio headers and is only
	# used for live playback, which we never do.
	$(BIN)/pip install -q --no-deps "tinysoundfont==0.3.7"
	touch $@

install: $(STAMP) $(SYSTEM_STAMP)

$(SYSTEM_STAMP):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	else echo "not root or no apt-get: skipping Debian packages ($(DEBIAN_PACKAGES)); tests that need them are skipped"; fi
	@mkdir -p $(VENV) && touch $@

system-deps: $(SYSTEM_STAMP)

data: $(STAMP)
	$(BIN)/vqkeras data render --out $(DATA_DIR)

report: install data
	$(BIN)/vqkeras report $(EXPERIMENTS)

test: install
	$(MAKE) test-jax test-tensorflow

test-jax:
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q tests

test-tensorflow:
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -m backend tests

bench: install data
	KERAS_BACKEND=jax $(BIN)/python benchmarks/phase_reconstruction.py
	KERAS_BACKEND=jax $(BIN)/python benchmarks/rate_distortion.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/training_throughput.py --ops

default-model: install data
	# TensorFlow: its XLA convolutions train this model ~8x faster on CPU than JAX.
	KERAS_BACKEND=tensorflow $(BIN)/vqkeras --backend tensorflow codec train-default --data $(DATA_DIR)

clean:
	rm -rf runs reports/*/ .pytest_cache
