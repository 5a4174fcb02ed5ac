# simplefast: every command a developer or CI needs (STYLE.md section 9).
# The virtualenv lives in .venv inside the repo; nothing is installed by hand.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip --disable-pip-version-check -q
FUZZ_SECONDS ?= 60
PYTEST_ARGS  ?=

.PHONY: all venv build debug run test test-ref bench fuzz fuzz-asan lint clean

all: build

# --- environment -----------------------------------------------------------
# A fresh Debian may lack the venv module (python3-venv), a C compiler or expat's
# headers (libexpat1-dev: ext/pidfscan.pyx links libexpat):
# install them with apt when we can (root or sudo), else say what is missing.
$(VENV)/.created:
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || ! command -v cc >/dev/null \
	    || [ ! -f /usr/include/expat.h ]; then \
	  echo "installing python3-venv python3-dev gcc libexpat1-dev with apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q python3-venv python3-dev gcc libexpat1-dev || \
	    { echo "make: need python3-venv, python3-dev, gcc and libexpat1-dev (apt-get failed)"; exit 1; }; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel "Cython>=3.0.10,<3.3" "lxml>=5.2"
	touch $@

$(VENV)/.test: $(VENV)/.created pyproject.toml
	$(PIP) install -e '.[test]' --no-build-isolation
	touch $@

$(VENV)/.bench: $(VENV)/.test
	$(PIP) install -e '.[test,bench]' --no-build-isolation
	touch $@

$(VENV)/.dev: $(VENV)/.test
	$(PIP) install -e '.[test,dev]' --no-build-isolation
	touch $@

venv: $(VENV)/.test

# SIPp (Debian's sip-tester) drives the live tests and the load benchmarks; baresip
# (baresip-core: a real SIP client with presence) is the live tests' real client; curl and
# openssl run in docs/operator.md's commands (tests/live/test_operator_guide.py).
$(VENV)/.sipp: $(VENV)/.created
	@if ! command -v sipp >/dev/null || ! command -v baresip >/dev/null || ! command -v curl >/dev/null \
	    || ! command -v openssl >/dev/null; then \
	  echo "installing sip-tester (SIPp), baresip-core, curl and openssl with apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q sip-tester baresip-core curl openssl || \
	  { echo "make: need sipp, baresip, curl and openssl (apt-get install failed)"; exit 1; }; \
	fi
	touch $@

# --- build -----------------------------------------------------------------
# Re-cythonizes what changed and builds the extensions in place
# (simplefast/_ext/<name>.*.so), which the editable install imports.
build: $(VENV)/.test
	$(PY) setup.py -q build_ext --inplace

debug: $(VENV)/.test
	SIMPLEFAST_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force
	@echo "annotated HTML: ext/*.html"

# --- tests -----------------------------------------------------------------
# The whole suite; parser tests run twice (ref and ext) through the impl fixture.
test: build $(VENV)/.sipp
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Same suite with the pure-Python reference selected as the active module.
test-ref: build $(VENV)/.sipp
	SIMPLEFAST_IMPL=ref $(PY) -m pytest -q $(PYTEST_ARGS)

# The server on 127.0.0.1:5060 (SIPp installed for trying it), state in ./state.
run: build $(VENV)/.sipp
	mkdir -p state
	$(VENV)/bin/simplefast serve --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 --data-dir state $(RUN_ARGS)

bench: build $(VENV)/.bench
	$(PY) -m pytest bench -q --benchmark-only --benchmark-autosave \
	  --benchmark-group-by=group --benchmark-json=.benchmarks/last.json \
	  --benchmark-columns=min,median,iqr,ops,rounds $(PYTEST_ARGS)
	$(PY) bench/report.py .benchmarks/last.json

# simplefast and Kamailio side by side (bench/README.md, "Side-by-side report"): installs what
# is missing (Kamailio, SIPp, matplotlib), at most 30 minutes, results in bench/results/.
# COMPARE_ARGS='--quick --only register --no-kamailio' for a smoke run.
COMPARE_ARGS ?=
.PHONY: bench-compare
bench-compare: build $(VENV)/.bench
	$(PY) bench/compare.py $(COMPARE_ARGS)

fuzz: build $(VENV)/.dev
	mkdir -p tests/corpus/fuzz-work
	$(PY) tests/fuzz/fuzz_sipmsg.py -max_total_time=$(FUZZ_SECONDS) -dict=tests/fuzz/sip.dict \
	  -artifact_prefix=tests/corpus/crashes/ -rss_limit_mb=4096 \
	  tests/corpus/fuzz-work tests/corpus/sipmsg
	mkdir -p tests/corpus/fuzz-work-msrpframe tests/corpus/crashes-msrpframe
	$(PY) tests/fuzz/fuzz_msrpframe.py -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=tests/corpus/crashes-msrpframe/ -rss_limit_mb=4096 \
	  tests/corpus/fuzz-work-msrpframe tests/vectors/msrp

# The same harness over an AddressSanitizer/UBSan build of the extensions
# (build/asan/, out of tree), Python allocating with malloc so ASan guards the
# input buffers too: out-of-bounds reads in the C scanners fail loudly here.
# gcc's libasan swallows libFuzzer's coverage hooks, so this mode replays the
# corpus grown by `make fuzz` (tests/corpus/fuzz-work) and then mutates it
# without guidance; run `make fuzz` first for a useful corpus.
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
fuzz-asan: $(VENV)/.dev
	SIMPLEFAST_SANITIZE=1 $(PY) setup.py -q build --build-lib build/asan/lib --build-temp build/asan/tmp
	mkdir -p tests/corpus/fuzz-work
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 PYTHONMALLOC=malloc \
	  PYTHONPATH=build/asan/lib $(PY) tests/fuzz/fuzz_sipmsg.py -max_total_time=$(FUZZ_SECONDS) \
	  -dict=tests/fuzz/sip.dict -artifact_prefix=tests/corpus/crashes/ -rss_limit_mb=8192 \
	  tests/corpus/fuzz-work tests/corpus/sipmsg

lint: build $(VENV)/.dev
	$(VENV)/bin/ruff check simplefast tests bench setup.py
	$(VENV)/bin/ruff format --check simplefast tests bench setup.py
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest simplefast._ext.sipmsg simplefast._ext.shmindex simplefast._ext.udpio simplefast._ext.fanout \
	  simplefast._ext.msrpframe simplefast._ext.fastreg simplefast._ext.fastrelay simplefast._ext.pidfcheck \
	  simplefast._ext.fastpub simplefast._ext.pidfscan simplefast._ext.fastsub simplefast._ext.subrow

clean:
	rm -rf build dist *.egg-info simplefast.egg-info ext/*.c ext/*.html \
	  simplefast/_ext/*.so .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
