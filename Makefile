# vimss developer tasks. `make demo` and `make test` install everything they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vimss-installed
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-slow test-cuda lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with vimss, torch (CPU build) and the test tools

# Debian packages `vimss data synth` needs (fluidsynth, soundfonts, instrument pictures).
SYSTEM_PACKAGES := fluidsynth fluid-soundfont-gm musescore-general-soundfont-small \
	timgm6mb-soundfont openclipart-png tuxpaint-stamps-default
SYSTEM_STAMP := $(VENV)/.vimss-system-deps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(SYSTEM_STAMP):
	dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	  $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); }
	mkdir -p $(VENV) && touch $@

system-deps: $(SYSTEM_STAMP)  ## install the Debian packages of `vimss data synth` (apt-get)

demo: install  ## separate the bundled examples into out/demo/ (an audio duet, a filmed violin duet)
	$(BIN)/vimss separate examples/duet_vn_vc.flac --instruments vn,vc -o out/demo --force
	$(BIN)/vimss separate examples/duet_vn_vn.mp4 --instruments vn,vn -o out/demo --force

test: install system-deps  ## lint, then the fast test suite (what CI runs)
	$(BIN)/ruff check src tests scripts
	$(BIN)/pytest -q -m "not slow and not cuda" $(PYTEST_ARGS)

test-slow: install  ## the slow tests (long inputs, subprocess interrupts)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

test-cuda: install  ## CUDA-only tests (on a GPU machine)
	$(BIN)/pytest -q -m cuda $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: install
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

bench: install  ## realtime factor and peak memory of `vimss separate` (prints figures)
	$(BIN)/python benchmarks/bench_separate.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
