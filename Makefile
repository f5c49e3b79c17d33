# Every target that needs Python depends on `setup`, so a fresh clone needs no manual step.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UNAME  := $(shell uname -s)
# The CPU build of torch that Linux machines here carry locally; an unpinned torch
# would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

INPUT   ?= dataengine/sample_data
OUT     ?= shards
WORKERS ?= 2
CLUSTER ?=
STEPS   ?= 100000
# make quality's default size fits 15 minutes on 2 CPU cores; STEPS=... overrides it
QUALITY_STEPS := $(if $(filter command line,$(origin STEPS)),$(STEPS),1500)
SHARDS  ?= $(OUT)
NPROC   ?= 2
RUN     ?= runs/pretrained
ARGS    ?=
GAMES   ?= 100
PGN     ?= games/selfplay.pgn
NODES   ?= 4000
FRACTION ?= 1.0
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup test test-slow bench gpu-check quality lint shards inspect train train-ddp plot eval puzzles uci stockfish selfplay teacher clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## create .venv and install the project (idempotent)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required, found " + sys.version)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(UNAME),Linux)
	$(PY) -m pip install -q $(TORCH_PIN)
endif
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: setup stockfish ## run the quick CPU test suite (under ~10 minutes on 2 cores)
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: setup stockfish ## run every test, including those marked slow
	$(PY) -m pytest -q -n 2

bench: setup ## print the benchmark tables (labelers, data engine, loader, trainer, teacher, engine)
	$(PY) bench/bench_labelers.py
	$(PY) bench/bench_dataengine.py
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_teacher.py
	$(PY) bench/bench_engine.py

gpu-check: ## the GPU path measured in one table (CUDA torch installed where a GPU is visible): make gpu-check [ARGS="--device cpu"]
	bash bench/gpu_check.sh $(ARGS)

quality: setup $(if $(filter $(OUT),$(SHARDS)),$(OUT)/manifest.json) ## SSL vs no SSL, same steps and seed: make quality [STEPS=1500] [SHARDS=shards] [ARGS="--device cuda --games 100"]
	$(PY) bench/quality.py --steps $(QUALITY_STEPS) --shards $(SHARDS) $(ARGS)

lint: setup ## ruff over the whole project
	$(VENV)/bin/ruff check .

shards: setup ## build labelled shards: make shards [INPUT=files-or-dirs] [OUT=shards] [WORKERS=2] [CLUSTER=tcp://host:8786] [ARGS=--force]
	$(PY) -m dataengine.build $(INPUT) --out $(OUT) --workers $(WORKERS) --config config.yaml $(if $(CLUSTER),--scheduler $(CLUSTER)) $(ARGS)

# the default shards are built only when there are none: real shards are never overwritten
$(OUT)/manifest.json:
	$(MAKE) shards ARGS=

train: setup $(OUT)/manifest.json ## train: make train STEPS=100000 [ARGS="--batch-size 256 --auto-resume"]
	$(PY) -m train --config config.yaml --steps $(STEPS) --shards $(OUT) $(ARGS)

train-ddp: setup $(OUT)/manifest.json ## train on NPROC GPUs of this machine: make train-ddp NPROC=4 [ARGS="--batch-size 256"]
	$(VENV)/bin/torchrun --standalone --nproc-per-node $(NPROC) -m train --config config.yaml --steps $(STEPS) --shards $(OUT) $(ARGS)

plot: setup ## loss curves of a run to PNG: make plot [RUN=runs/pretrained]
	$(PY) -m train.plot $(RUN)

eval: setup ## compare two checkpoints: make eval A=new.pt B=old.pt [ARGS="--games 100 --pgn games.pgn --report eval.json"]
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make eval A=CHECKPOINT|random|material|stockfish B=... [ARGS=...]"; exit 2; }
	$(PY) -m train.enhanced_eval --model-a $(A) --model-b $(B) --shards $(OUT) $(ARGS)

puzzles: setup ## held-out Lichess puzzles, first move and full line: make puzzles [CKPT=checkpoints/pretrained.pt] [ARGS="--sims 100,400 --limit 500 --report p.json"]
	$(PY) -m train.puzzles $(or $(CKPT),checkpoints/pretrained.pt) $(ARGS)

# `@`: the UCI stream is stdout, where an echoed command would be a stray line (GUIs are
# better given `.venv/bin/python -m train.uci --checkpoint CKPT` itself)
uci: setup ## the network as a UCI engine on stdin/stdout: make uci [CKPT=checkpoints/pretrained.pt] [ARGS="--device cuda --nodes 800"]
	@$(PY) -m train.uci --checkpoint $(or $(CKPT),checkpoints/pretrained.pt) $(ARGS)

.PHONY: elo
elo: setup stockfish ## Elo of a checkpoint against Stockfish levels: make elo CKPT=checkpoints/pretrained.pt [ARGS="--games 40 --tc 10+0.1 --opponent material"]
	@test -n "$(CKPT)" || { echo "usage: make elo CKPT=checkpoint.pt [ARGS=\"--games 40 --opponent material\"]"; exit 2; }
	$(PY) -m train.gauntlet --checkpoint $(CKPT) --pgn games/elo.pgn --report games/elo.json $(ARGS)

.PHONY: export
export: setup ## the network for use elsewhere (TorchScript, or ONNX with pip install -e '.[onnx]'): make export [CKPT=checkpoints/pretrained.pt] [ARGS="--format onnx --out net.onnx --weights raw"]
	$(PY) -m train.export $(or $(CKPT),checkpoints/pretrained.pt) $(ARGS)

inspect: setup ## summary of built shards: make inspect [OUT=shards]
	$(PY) -m dataengine.inspect summary $(OUT)

stockfish: ## install Stockfish (apt) unless `stockfish` is on PATH or in /usr/games
	@command -v stockfish >/dev/null 2>&1 || test -x /usr/games/stockfish || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $(SUDO) apt-get install -y stockfish || { $(SUDO) apt-get update && $(SUDO) apt-get install -y stockfish; }; \
	  else \
	    echo "Stockfish is missing and apt-get is not available here: install it with your package manager" >&2; \
	    echo "(brew install stockfish, dnf install stockfish, pacman -S stockfish) or put a binary from" >&2; \
	    echo "https://stockfishchess.org/download/ on PATH (any path works with --engine PATH)" >&2; \
	    exit 1; \
	  fi; }

selfplay: setup stockfish ## Stockfish self-play PGN: make selfplay [GAMES=100] [PGN=games/selfplay.pgn] [NODES=4000] [WORKERS=2]
	$(PY) -m dataengine.selfplay --games $(GAMES) --out $(PGN) --nodes $(NODES) --workers $(WORKERS) $(ARGS)

teacher: setup stockfish $(OUT)/manifest.json ## annotate shards with Stockfish: make teacher [OUT=shards] [NODES=4000] [FRACTION=1.0] [WORKERS=2]
	$(PY) -m dataengine.teacher $(OUT) --nodes $(NODES) --fraction $(FRACTION) --workers $(WORKERS) $(ARGS)

clean: ## remove built shards and caches (keeps .venv)
	rm -rf $(OUT)/train $(OUT)/val $(OUT)/val.zarr $(OUT)/manifest.json $(OUT)/skipped.log $(OUT)/.work
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
