# The two setup commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv rebuild fuzz asan bench clean

# Create the venv and install jpegnet editable with its test dependencies. Re-run when the
# project metadata or the C source changes.
$(STAMP): pyproject.toml setup.py jpegnet/codec/_reader.c jpegnet/dct/_resample.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m jpegnet.demo

test: $(STAMP)
	$(PY) -m pytest -q

# Long fuzzing run: mutated corpus files, forever-ish (FUZZ_SECONDS, default 600).
fuzz: $(STAMP)
	$(PY) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-600}

# Address-sanitizer build of the reader in a scratch copy (build/asan), so the working tree's extension is
# untouched; then the reader tests and a fuzz burst (FUZZ_SECONDS, default 60) under it.
ASAN_ENV = ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) PYTHONPATH=. \
	JPEGNET_SHARED_DATA=$(abspath ../shared/data)
asan: $(STAMP)
	rm -rf build/asan && mkdir -p build/asan && cp -r jpegnet tests build/asan/
	rm -f build/asan/jpegnet/codec/*.so
	JPEGNET_ASAN=1 $(PY) setup.py -q build_ext --build-lib build/asan --build-temp build/asan-tmp --force
	cd build/asan && $(ASAN_ENV) ../../$(PY) -m pytest -q -p no:cacheprovider tests/test_reader.py tests/test_fuzz.py \
	  -k "not jpeglib and not resident_memory"  # jpeglib dlopens its libjpeg in a way ASan refuses; ASan quarantine grows RSS
	cd build/asan && $(ASAN_ENV) ../../$(PY) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-60}

bench: $(STAMP)
	$(PY) benchmarks/reader.py

clean:
	rm -rf build jpegnet/codec/*.so $(VENV)

# Rebuild the extension after editing _reader.c, replacing the .so atomically (new inode), so processes that
# have the old one loaded keep running.
rebuild: $(STAMP)
	rm -rf build/rebuild && $(PY) setup.py -q build_ext --build-lib build/rebuild --build-temp build/rebuild-tmp
	mv -f build/rebuild/jpegnet/codec/_reader*.so jpegnet/codec/
