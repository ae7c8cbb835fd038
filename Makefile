# decur — every target sets up .venv first when it is missing or stale.
PYTHON ?= python3
# Bytecode is written on first import (only the modules a command uses: pip compiling all of torch on one core was
# half of the set-up time); an environment that turns bytecode off would recompile them in every process.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench experiment clean convergence split mutants mutation-score docs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## DeCUR pretraining on the built-in synthetic data (the built-in config: 96 steps, LARS at 6.0), then the
## evaluation summary; 4 minutes on a 2-core Intel Xeon, 10.5 on a 2-core AMD EPYC without AVX-512
## (docs/results/demo-synthetic-cpu.md)
demo: $(STAMP)
	$(BIN)/decur pretrain --output runs/demo

## the test suite (fast tests; <= 10 min on 2 CPU cores): one pytest process per core, one torch thread each, a
## test file's tests in one process (module fixtures built once). Most tests are short and latency-bound (process
## start, imports, file I/O), so two single-thread processes beat one two-thread process: 15:45 -> 8:40 on a 2-core
## AMD EPYC. `pytest` alone still runs everything in one process.
test: $(STAMP)
	DECUR_TEST_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile

## tests marked slow, then the documentation site (strict)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow
	$(MAKE) docs

## the documentation site (docs/ -> site/, strict: broken links and references fail)
MATHJAX := docs/javascripts/vendor/mathjax-tex-svg.js

docs: $(STAMP) $(MATHJAX)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[docs]'
	$(BIN)/mkdocs build --strict

## MathJax 3 (SVG output: one file, no fonts to fetch) from the npm registry, served with the site: the equations
## render offline and behind firewalls; not committed (a third party's code stays a dependency)
$(MATHJAX):
	@mkdir -p $(@D) /tmp/decur-mathjax
	cd /tmp/decur-mathjax && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz package/es5/tex-svg.js
	cp /tmp/decur-mathjax/package/es5/tex-svg.js $@

## the mutation check: 100 plausible one-line bugs put back one at a time, each must fail its tests (15-40 min on 2 cores)
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants

## the mutation score a tool measures: mutmut on the named modules, kill rate per module and the survivors
## (about 10 minutes per module on 2 cores; `make mutation-score MODULES="losses metrics"` for some)
mutation-score: $(STAMP)
	$(BIN)/python -m tests.mutation_score $(MODULES)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## throughput benchmarks -> benchmarks/results/
bench: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/ddp_overhead.py
	PYTHONPATH=. $(BIN)/python benchmarks/loader_throughput.py
	$(BIN)/python benchmarks/transfer_throughput.py
	PYTHONPATH=. $(BIN)/python benchmarks/bigearthnet_loader.py
	$(BIN)/python benchmarks/cmx_step.py
	PYTHONPATH=. $(BIN)/python benchmarks/embed_throughput.py

## the convergence study: alignment, factor R² and probe mAP over training, 4 methods x 3 seeds (issue 14)
convergence: $(STAMP)
	$(BIN)/decur convergence --config configs/convergence.yaml --output docs/results/convergence

## the miniature of the paper's tables on the synthetic data (about an hour on 2 CPU cores)
## method.common_dim=auto against the grid search over common shares, 3 truths x 3 seeds (issue 37; ~50 min, 2 cores)
split: $(STAMP)
	$(BIN)/decur split --config configs/split_study.yaml --output docs/results/split

experiment: $(STAMP)
	$(BIN)/decur experiment --config configs/experiment.yaml --output docs/results/experiment
	$(BIN)/decur sweep --config configs/sweep_common_share.yaml --output docs/results/sweep-common-share
	$(BIN)/decur sweep --config configs/sweep_projector.yaml --output docs/results/sweep-projector

clean:
	rm -rf runs site .pytest_cache .mypy_cache .ruff_cache
