# Quick start: `make run` (set up and serve the bundled model), `make test` (set up and test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: setup setup-test browser run test protos lint bench bench-fleet bench-decode clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock files are complete (every transitive package, pinned) and installed with
# --no-deps: nothing resolves at install time, and the tests' mediapipe (the reference for
# models/mediapipe) comes without opencv-contrib-python, which would collide with
# opencv-python-headless. Regenerate them with scripts/lock.sh.
$(VENV)/.server-installed: $(BIN)/python requirements/server.txt pyproject.toml
	$(PIP) install -q --no-deps -r requirements/server.txt
	$(PIP) install -q --no-deps -e .
	$(BIN)/python -c "import ekyc.server.app, ekyc.client.cli"
	touch $@

$(VENV)/.test-installed: $(VENV)/.server-installed requirements/test.txt
	$(PIP) install -q --no-deps -r requirements/test.txt
	touch $@

setup: $(VENV)/.server-installed

setup-test: $(VENV)/.test-installed

run: setup
	$(BIN)/ekyc-server

# The demo page's tests drive Debian's chromium (Playwright's browser download is unreachable).
browser:
	bash scripts/install_chromium.sh

test: setup-test browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

protos: setup-test
	$(BIN)/python scripts/generate_protos.py

# buf: the contract's style; scripts/lint_imports.py: the layers (import-linter, pyproject.toml).
lint: setup-test
	$(BIN)/buf lint
	$(BIN)/python scripts/lint_imports.py

clean:
	rm -rf $(VENV) .pytest_cache

bench: setup-test
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/http_bench.py

# A batch over two servers behind Envoy against one two-thread server (bench/README.md).
bench-fleet: setup-test
	$(BIN)/python bench/fleet_bench.py

# DCT-domain JPEG decoding per image size: cost and quality-reason parity (needs EKYC_DATA_DIR).
bench-decode: setup-test
	$(BIN)/python bench/decode_bench.py
