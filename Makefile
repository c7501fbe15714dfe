# Two commands matter on a fresh machine:
#   make chat   - create .venv, install everything, run the chat (python main.py)
#   make test   - create .venv, install everything plus test tools, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: chat test ingest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

chat: $(VENV)/.installed
	$(BIN)/python main.py

ingest: $(VENV)/.installed
	$(BIN)/python create_and_persist_embeddings.py

test: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV)
