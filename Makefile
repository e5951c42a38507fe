# Two entry points (see README): `make run` starts the workbench, `make test` runs the tests.
# Both create the virtual environment and install everything they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SLOWMODE_HOST ?= 127.0.0.1
SLOWMODE_PORT ?= 8050

.PHONY: run test setup browser bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP) assets/vendor/3Dmol-min.js

# 3Dmol.js is served by the app itself (no CDN); it comes from the npm registry, not git.
assets/vendor/3Dmol-min.js:
	mkdir -p assets/vendor build/npm
	cd build/npm && (test -f node_modules/3dmol/build/3Dmol-min.js || npm install --silent --no-audit --no-fund --prefix . 3dmol@2.5.5)
	cp build/npm/node_modules/3dmol/build/3Dmol-min.js assets/vendor/3Dmol-min.js

# Headless Chromium for the browser tests (Debian package; needs root, as on CI).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: setup
	$(BIN)/python app.py --host $(SLOWMODE_HOST) --port $(SLOWMODE_PORT)

# Lint and format are part of the test command, so CI enforces one style. Two pytest-xdist
# workers, one per core of the CI machine (XLA runs single-threaded in tests, and the browser
# tests wait on their server much of the time); --dist loadfile keeps each module, and its
# module-scoped server, on one worker. Measured: 12 min 44 s against 16 min 37 s serial; later,
# on the same machine grown slower, 19 min 0 s, and 17 min 0 s with three workers at 98 % CPU
# (a third worker buys little and loads every browser test's server more).
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Benchmarks write bench/results/*.json|png; tables are collected in docs/benchmarks.md.
bench: setup browser
	$(BIN)/python -m bench.bench_overhead
	$(BIN)/python -m bench.bench_modes
	$(BIN)/python -m bench.bench_fig3
	$(BIN)/python -m bench.bench_protein_eval
	$(BIN)/python -m bench.bench_protein --cases 2jof-unfolded,2jof-extended,1plw-extended
	$(BIN)/python -m bench.bench_protein --cases 2wxc-native --seeds 3 --det-seeds 2
	$(BIN)/python -m bench.bench_ui

clean:
	rm -rf $(VENV) build assets/vendor
