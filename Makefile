# Two commands matter on a fresh machine:
#   make chat   - create .venv, install everything, run the chat (python main.py)
#   make test   - create .venv, install everything plus test tools, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: chat test ingest bench clean

# On Linux the CPU build of torch comes from PyTorch's CPU wheel index (PyPI's Linux wheel is the
# multi-GB CUDA build). Only torch is asked of that index, once, so an unreachable index costs a
# second, not a retry per package. macOS takes PyPI's wheel.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell grep '^torch==' constraints.txt)
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints.txt

.PHONY: pins

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt constraints.txt | $(BIN)/python
	if [ "$$(uname -s)" = Linux ]; then \
		$(BIN)/pip install --quiet --no-deps --retries 0 --extra-index-url $(TORCH_INDEX) "$(TORCH_PIN)"; fi
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

# Refresh constraints.txt on purpose: resolve requirements*.txt afresh in a scratch venv and
# record what it got. Run `make test` on the result and commit it on its own.
pins:
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/pip install --quiet --upgrade pip
	if [ "$$(uname -s)" = Linux ]; then \
		.venv-pins/bin/pip install --quiet --no-deps --retries 0 --extra-index-url $(TORCH_INDEX) torch; fi
	.venv-pins/bin/pip install --quiet -r requirements-dev.txt
	{ sed -n '1,3p' constraints.txt; .venv-pins/bin/pip freeze --exclude-editable | sed 's/^\(torch==[^+]*\)+cpu$$/\1/'; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-pins

chat: $(VENV)/.installed
	$(BIN)/python main.py

ingest: $(VENV)/.installed
	$(BIN)/python create_and_persist_embeddings.py

test: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .venv-pins
