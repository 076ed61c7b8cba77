# The two set-up commands of the README: `make reproduce` (main job) and `make test`.
# Both install what they need first; the CPU build of torch is pinned before anything
# else can pull a multi-GB CUDA build.
PYTHON ?= python
PYTEST_ARGS ?= -n 2

.PHONY: install reproduce test benchmark

.installed: pyproject.toml Makefile
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[all]"
	touch .installed

install: .installed

reproduce: .installed
	$(PYTHON) scripts/reproduce.py

benchmark: .installed
	$(PYTHON) scripts/benchmark.py

test: .installed
	$(PYTHON) -m pytest $(PYTEST_ARGS)
