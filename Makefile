# sqcodec developer entry points. Every target sets itself up (a venv in .venv with the pinned torch).
#   make demo [WAV=path/to/file.wav]   install, then encode + decode on the embedded default
#   make test                          install the test extras, then run the default test suite
#   make test-slow                     the tests marked slow (long training / fuzzing runs)
#   make lint                          ruff
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS ?= 2

.PHONY: install install-test demo test test-slow lint clean

# uv keeps a warm download cache (torch is ~4 GB); fall back to venv + pip where uv cannot be had.
$(VENV)/.installed-%: pyproject.toml constraints.txt
	@if ! command -v uv >/dev/null 2>&1; then $(PYTHON) -m pip install -q uv 2>/dev/null || $(PYTHON) -m pip install -q --user uv 2>/dev/null || true; fi
	@if command -v uv >/dev/null 2>&1; then \
	  [ -x $(PY) ] || uv venv -q $(VENV) -p $(PYTHON); \
	  VIRTUAL_ENV=$(VENV) uv pip install -q -c constraints.txt -e ".[$*]"; \
	else \
	  [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -q -c constraints.txt -e ".[$*]"; \
	fi
	@touch $@

install: $(VENV)/.installed-vocoder
install-test: $(VENV)/.installed-test $(VENV)/.installed-libriabx

# the reference ABX the cross-check test compares against; its PyPI wheels need numpy 1.x, so it is
# built from source (a C compiler is needed; without one the cross-check test skips, or fails in CI)
$(VENV)/.installed-libriabx: $(VENV)/.installed-test
	@if command -v uv >/dev/null 2>&1; then \
	  VIRTUAL_ENV=$(VENV) uv pip install -q -c constraints.txt --no-binary zerospeech-libriabx \
	    "zerospeech-libriabx==1.0.5"; \
	else \
	  $(PY) -m pip install -q -c constraints.txt --no-binary zerospeech-libriabx "zerospeech-libriabx==1.0.5"; \
	fi || echo "note: zerospeech-libriabx did not build; the ABX cross-check test will skip"
	@touch $@

demo: install
	$(PY) -m sqcodec.cli demo $(if $(WAV),"$(WAV)")

test: install-test
	$(PY) -m pytest -q

test-slow: install-test
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check sqcodec tests tools
	$(VENV)/bin/ruff format --check sqcodec tests tools

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
