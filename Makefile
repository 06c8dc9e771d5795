# Two commands for a fresh machine:  make run   (dashboard)   and   make test   (all tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run dev test test-fast test-browser setup prepare benchmark docs docs-serve wheel clean

$(STAMP): requirements.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

DATA ?= ../shared/data

# The dashboard: prepares data/gz1 from $(DATA) once (when that data is present), then starts it
# as `galaxy dashboard` does for an installed package (the shipped .streamlit/config.toml).
run: $(STAMP)
	@if [ ! -f data/gz1/summary.json ] && [ -f $(DATA)/gz1_sdss/gz1_classes.csv ]; then \
	    $(VENV)/bin/galaxy prepare --source gz1 $(DATA)/gz1_sdss/gz1_classes.csv \
	        $(DATA)/gz1_sdss/images --out data/gz1 --splits 3; fi
	GALAXY_DATA=$(abspath $(DATA)) $(VENV)/bin/galaxy dashboard

# Development: as run, but Streamlit watches the files and reloads pages when they change.
dev: $(STAMP)
	GALAXY_DATA=$(abspath $(DATA)) $(VENV)/bin/streamlit run app.py \
	    --server.fileWatcherType auto --server.runOnSave true

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser

prepare: $(STAMP)
	$(VENV)/bin/galaxy prepare --source gz1 $(DATA)/gz1_sdss/gz1_classes.csv \
	    $(DATA)/gz1_sdss/images --out data/gz1 --splits 3

benchmark: $(STAMP)
	$(PY) benchmarks/bench_train_infer.py

# The manual (MkDocs, sources in docs/) into build/site; make test builds it with --strict too.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

# The wheel (shipped model and dashboard inside) into build/dist/, built offline with this setuptools.
wheel: $(STAMP)
	$(PY) -m pip wheel . --no-deps --no-build-isolation --no-index -w build/dist

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build
