# The two setup commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv build fuzz asan bench clean

# Create the venv and install jpegnet editable with its test dependencies. Re-run when the
# project metadata or the C source changes.
$(STAMP): pyproject.toml setup.py jpegnet/codec/_reader.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Rebuild the C extension in place (after editing _reader.c).
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

demo: $(STAMP)
	$(PY) -m jpegnet.demo

test: $(STAMP)
	$(PY) -m pytest -q

# Long fuzzing run: mutated corpus files, forever-ish (FUZZ_SECONDS, default 600).
fuzz: $(STAMP)
	$(PY) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-600}

# Address-sanitizer build of the reader, then the reader tests and a fuzz burst under it.
asan:
	test -x $(PY) || $(MAKE) venv
	JPEGNET_ASAN=1 $(PY) setup.py -q build_ext --inplace --force
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	  $(PY) -m pytest -q tests/test_reader.py tests/test_fuzz.py
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	  $(PY) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-60}
	$(PY) setup.py -q build_ext --inplace --force

bench: $(STAMP)
	$(PY) benchmarks/reader.py

clean:
	rm -rf build jpegnet/codec/*.so $(VENV)
