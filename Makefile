# Two entry points: `make app` (set up, then run the web UI, `hdvila app`, on http://127.0.0.1:7860 with
# the bundled models) and `make test` (set up, then run the test suite). Setup runs
# once; later calls reuse the venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: app test lint setup browser demo-data clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch 2.14.1 + torchvision 0.29.1: a matching pair (each torchvision release is built for one torch release)
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[test]'
	# MTCNN face detection (generation/faces; weights inside the wheel). --no-deps: its pins (torch<2.3,
	# numpy<2, Pillow<10.3) are older than ours; what it needs at run time (requests, tqdm) comes with ours
	$(BIN)/pip install --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

app: $(STAMP)
	$(BIN)/hdvila app

# Headless Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Lint (ruff; its settings are in pyproject.toml). CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
