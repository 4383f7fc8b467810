# etdeploy: two-command quick start on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint install freeze clean-venv

install: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk; any other spec pulls CUDA.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test,dev,package,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/etdeploy demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check etdeploy tests benchmarks

# after a deliberate upgrade (pip install -U ... in the venv) and a green make test: record the versions
freeze: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(PIP) freeze | grep -v -E '^-e|^#|^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-venv:
	rm -rf $(VENV)
