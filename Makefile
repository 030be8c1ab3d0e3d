# cellbox: `make run` starts the server, `make test` runs the whole suite. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The playground's third-party code (CodeMirror, marked, plotly.js), built from npm at the
# versions in package-lock.json; not committed.
VENDOR_SRC := cellbox/playground/vendor
VENDOR     := cellbox/playground/static/vendor/.built

.PHONY: install run test lint bench clean

install: $(STAMP) $(VENDOR)

# System packages from Debian, one per line (installed with apt-get when missing and root).
APT_PACKAGES += bubblewrap
APT_PACKAGES += btrfs-progs
APT_PACKAGES += chromium
APT_PACKAGES += slirp4netns
APT_PACKAGES += nftables
# kubectl (to render deploy/kubernetes in the tests): Debian's, unless one is installed already
APT_PACKAGES += $(if $(shell command -v kubectl),,kubernetes-client)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "cellbox needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing with apt-get:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(VENDOR): $(STAMP) $(VENDOR_SRC)/package.json $(VENDOR_SRC)/package-lock.json \
		$(VENDOR_SRC)/entry.mjs $(VENDOR_SRC)/build.sh
	PATH="$(CURDIR)/cellbox/packages/shim/bin:$$($(BIN)/python -c 'from cellbox.node import node_bin_dir; print(node_bin_dir())'):$$PATH" \
		sh $(VENDOR_SRC)/build.sh
	touch $(VENDOR)

run: install
	$(BIN)/cellbox serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# Ten minutes of 16 clients against a server under chaos (see bench/soak.py); root needed.
.PHONY: soak
soak: install
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
