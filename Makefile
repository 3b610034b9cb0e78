# reqo: set-up, serving, tests and benchmarks. Everything runs from the virtual environment .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on these machines' disk; an unpinned torch pulls a CUDA build.
TORCH_PIN := torch==2.13.0
# The torchvision built for TORCH_PIN (pytorch-widedeep imports it), for `make bench-reference`.
TORCHVISION_PIN := torchvision==0.28.0
RECBOLE_PIN := recbole==1.2.1
FASHION_MNIST := /usr/share/datasets/fashion-mnist
CHROMIUM := /usr/bin/chromium
CONFIG ?= reqo.yaml

.PHONY: install serve serve-fashion test lint bench bench-reference clean

$(VENV)/.installed: pyproject.toml examples/reqo-plugin-example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	$(BIN)/python -m pip install --quiet --no-deps -e examples/reqo-plugin-example
	# MovieLens-100K's files, inside RecBole's wheel (read from there, never committed).
	$(BIN)/python -m pip install --quiet --no-deps $(RECBOLE_PIN)
	# Fashion-MNIST (the visual-similarity demo) from Debian, as root or through sudo.
	test -e $(FASHION_MNIST)/train-images-idx3-ubyte.gz \
		|| apt-get install -y -q dataset-fashion-mnist \
		|| sudo -n apt-get install -y -q dataset-fashion-mnist
	# Debian's Chromium, which Playwright drives in the console's end-to-end tests (no browser
	# download), as root or through sudo.
	test -x $(CHROMIUM) \
		|| apt-get install -y -q chromium \
		|| sudo -n apt-get install -y -q chromium
	touch $@

install: $(VENV)/.installed

# The demo: MovieLens-100K in the demo database (once), its models trained (once), then serve.
serve: install
	$(BIN)/reqo dataset load ml-100k --config $(CONFIG) --db demo --skip-if-loaded
	$(BIN)/reqo train --config $(CONFIG) --db demo --missing-only
	$(BIN)/reqo serve --config $(CONFIG)

# The visual-similarity demo: Fashion-MNIST in the fashion database (once), its model trained
# (once), then serve on port 8001.
serve-fashion: install
	$(BIN)/reqo dataset load fashion-mnist --config examples/fashion.yaml --db fashion --skip-if-loaded
	$(BIN)/reqo train --config examples/fashion.yaml --db fashion --missing-only
	$(BIN)/reqo serve --config examples/fashion.yaml

# Recombee's JavaScript SDKs for the tests that run them in Node (tests/js; no lockfile kept):
# the client-side (browser) SDK and the server-side one. The stamp depends on tests/js/package.json
# and on both SDKs, so that a changed pin or a missing SDK installs them again.
JS_SDKS := tests/js/node_modules/recombee-js-api-client/package.json \
	tests/js/node_modules/recombee-api-client/package.json
JS_CLIENT := tests/js/node_modules/.reqo-installed

$(JS_CLIENT): tests/js/package.json $(JS_SDKS)
	npm install --prefix tests/js --no-package-lock --no-audit --no-fund --silent
	touch $@

# Nothing to do here: an SDK that is missing leaves the stamp out of date, whose rule installs it.
$(JS_SDKS):

# Two workers, a test file each at a time (module fixtures stay whole); schemathesis's generated
# tests run on their own, in one process, as their module-scoped target expects.
test: install $(JS_CLIENT)
	$(BIN)/python -m pytest -n 2 --dist loadfile --ignore=tests/server/test_schemathesis.py
	$(BIN)/python -m pytest tests/server/test_schemathesis.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.ingest_http
	$(BIN)/python -m bench.write_latency
	$(BIN)/python -m bench.import_parquet
	$(BIN)/python -m bench.reql_filter
	$(BIN)/python -m bench.recommend
	$(BIN)/python -m bench.evaluate
	$(BIN)/python -m bench.vector_search
	$(BIN)/python -m bench.visual_quality
	$(BIN)/python -m bench.sequence
	$(BIN)/python -m bench.ensemble
	$(BIN)/python -m bench.bandit_replay
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.fuzz

# RecBole's own GRU4Rec and SASRec on the same protocol as bench.sequence (GRU4Rec about 45
# minutes a seed on two CPU cores; SASRec about 4.5 CPU minutes an epoch, so its training stops
# at the first epoch past 70 minutes); bench.sequence reads their JSON. Then RecBole's
# SLIMElastic and ADMMSLIM on bench.evaluate's protocol (a), the reference of `slim` (minutes).
bench-reference: install
	$(BIN)/python -m pip install --quiet -e '.[reference]'
	$(BIN)/python -m bench.recbole_gru4rec
	$(BIN)/python -m bench.recbole_gru4rec --model SASRec --minutes 70
	$(BIN)/python -m bench.recbole_general --model SLIMElastic,ADMMSLIM --seeds 1,2,3
	# LightFM 1.17's setup script fails under build isolation: it builds with the venv's tools.
	$(BIN)/python -m pip install --quiet wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-use-pep517 lightfm==1.17
	# pytorch-widedeep 1.7.0 pins numpy<2 (and runs on numpy 2): its imports are in the
	# `reference` extra. It and torchvision go to build/reference, outside the environment,
	# without their dependencies (pip would replace the CPU torch): torchvision's wheel is built
	# for CUDA torch and, installed in the environment, would break `import transformers` (the
	# text embedder's); bench.cold_start puts the folder on its path and imports torchvision
	# without its compiled operators, which WideDeep does not use.
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target build/reference \
		$(TORCHVISION_PIN) pytorch-widedeep==1.7.0
	$(BIN)/python -m bench.cold_start

clean:
	rm -rf $(VENV) data build *.egg-info .mypy_cache .pytest_cache .ruff_cache
