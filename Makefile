# One place for every command the README names. Each target creates .venv when missing.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision from the local wheels this machine keeps (sae-dashboard pulls torchvision).
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)
	# d3 v6 for the sae-dashboard pages, from the npm registry into a gitignored folder (never committed).
	test -f .vendor/d3/package/dist/d3.min.js || (mkdir -p .vendor/d3 && cd .vendor/d3 && npm pack -q d3@6.7.0 && tar xzf d3-6.7.0.tgz) || echo 'npm unavailable: sae-dashboard pages will be skipped'
	# Debian's chromium (browser tests, PNG export) and a Japanese font for its screenshots.
	(command -v chromium && fc-list :lang=ja | grep -q .) || (command -v apt-get >/dev/null && apt-get update && apt-get install -y chromium fonts-ipafont-gothic) || echo 'apt unavailable: browser tests will be skipped'

demo: setup
	$(VENV)/bin/llmjp-ckpt demo $(ARGS)

test: setup
	$(VENV)/bin/ruff check llmjp_ckpt tests scripts benchmarks
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m slow

test-fast: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check llmjp_ckpt tests scripts benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
