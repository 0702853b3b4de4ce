"""Build the C extensions: the coefficient reader over libjpeg-turbo's libjpeg API, and the fused CPU
resampling kernel of the DCT data pipeline (no library needed)."""
import os

import numpy

from setuptools import Extension, setup

warnings = ["-Wall", "-Wextra", "-Wno-unused-parameter"]
sanitize_args = []
extra_link_args = []
if os.environ.get("JPEGNET_ASAN"):
    # Address-sanitizer build (make asan): catch out-of-bounds access in the C code.
    sanitize_args = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
    extra_link_args += ["-fsanitize=address"]
if os.environ.get("JPEGNET_FUZZ"):
    # Coverage-guided fuzzing build (make fuzz-cov, with CC=clang): libFuzzer's coverage counters and
    # comparison tracing without its main (atheris brings libFuzzer), plus ASan and UBSan. Undefined behaviour
    # aborts (no recovery), so libFuzzer records the input as a crash.
    sanitize_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined,fuzzer-no-link",
                     "-fno-sanitize-recover=undefined"]
    extra_link_args += ["-fsanitize=address,undefined,fuzzer-no-link"]
extra_compile_args = ["-O2", "-std=c11", *warnings, *sanitize_args]

setup(
    ext_modules=[
        Extension(
            "jpegnet.codec._reader",
            sources=["jpegnet/codec/_reader.c"],
            include_dirs=[numpy.get_include()],
            libraries=["jpeg", "pthread"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(
            "jpegnet.dct._resample",
            sources=["jpegnet/dct/_resample.c"],
            include_dirs=[numpy.get_include()],
            libraries=["m", "pthread"],
            # -O3 and GNU C (which lets gcc contract a·b + c into FMA); the hot loops carry their own AVX2
            # clone (target_clones), chosen at load time, so the build stays portable.
            extra_compile_args=["-O3", "-std=gnu11", *warnings, *sanitize_args],
            extra_link_args=extra_link_args,
        ),
    ]
)
