# vqkeras: the two commands a new user needs are `make report` and `make test`.
# Both create .venv and install everything (Debian packages too, when root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
MIX_STAMP := $(VENV)/.mix-deps
EXPERIMENTS ?= experiments/nsynth-minimal.yaml experiments/fashion-mnist-minimal.yaml
DATA_DIR ?= data/nsynth-rendered
# The notes of the reports and benchmark are rendered from TimGM6mb (in the
# pretty_midi wheel), also where FluidR3_GM is installed (the codec mix needs it).
REPORT_SOUNDFONT ?= TimGM6mb
MIX_DIR ?= data/codec-mix
# Families of `make mix` (empty: all five). The shipped model was trained on
# MIX_FAMILIES=notes,drums,samples,speech (before speech-recorded existed).
MIX_FAMILIES ?=
# Debian packages: the Fashion-MNIST set in IDX format (tests), the
# baseline codecs of the rate-distortion benchmark, and the small sources of
# the codec mix that its tests read (LMMS samples, espeak-ng).
DEBIAN_PACKAGES := dataset-fashion-mnist opus-tools lame lmms-common espeak-ng
# Every source of the codec's training mix (vqkeras data mix): ~450 MB more
# (fillets-ng-data-cs/-nl: the recorded dialogue of speech-recorded, 84 MB;
# its tests skip without them, so `make test` does not install them).
MIX_PACKAGES := hydrogen-drumkits lmms-common espeak-ng fluid-soundfont-gm \
	fillets-ng-data-cs fillets-ng-data-nl

.PHONY: all install system-deps mix-deps data mix report test test-jax test-tensorflow test-torch bench default-model clean

all: report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench,notebook,torch,cluster]"
	# tinysoundfont's pyaudio dependency needs PortAudio headers and is only
	# used for live playback, which we never do.
	$(BIN)/pip install -q --no-deps "tinysoundfont==0.3.7"
	touch $@

install: $(STAMP) $(SYSTEM_STAMP)

$(SYSTEM_STAMP): Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	else echo "not root or no apt-get: skipping Debian packages ($(DEBIAN_PACKAGES)); tests that need them are skipped"; fi
	@mkdir -p $(VENV) && touch $@

system-deps: $(SYSTEM_STAMP)

$(MIX_STAMP): Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(MIX_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	else echo "not root or no apt-get: install $(MIX_PACKAGES) yourself for the codec mix"; fi
	@mkdir -p $(VENV) && touch $@

mix-deps: $(MIX_STAMP)

data: $(STAMP)
	$(BIN)/vqkeras data render --soundfont $(REPORT_SOUNDFONT) --out $(DATA_DIR)

mix: $(STAMP) $(MIX_STAMP)
	$(BIN)/vqkeras data mix --out $(MIX_DIR) $(if $(MIX_FAMILIES),--families $(MIX_FAMILIES))

report: install data
	$(BIN)/vqkeras report $(EXPERIMENTS)

test: install
	$(MAKE) test-jax test-tensorflow test-torch

test-jax:
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q tests

test-tensorflow:
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -m backend tests

test-torch:
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q -m backend tests

bench: install data mix
	KERAS_BACKEND=jax $(BIN)/python benchmarks/phase_reconstruction.py
	KERAS_BACKEND=jax $(BIN)/python benchmarks/rate_distortion.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/training_throughput.py --ops

default-model: install mix
	# TensorFlow: its XLA convolutions train this model ~8x faster on CPU than JAX.
	KERAS_BACKEND=tensorflow $(BIN)/vqkeras --backend tensorflow codec train-default --data $(MIX_DIR)

clean:
	rm -rf runs reports/*/ .pytest_cache
