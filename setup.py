"""Build the one C extension: the coefficient reader over libjpeg-turbo's libjpeg API."""
import os

import numpy

from setuptools import Extension, setup

extra_compile_args = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
extra_link_args = []
if os.environ.get("JPEGNET_ASAN"):
    # Address-sanitizer build (make asan): catch out-of-bounds access in the reader.
    extra_compile_args += ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
    extra_link_args += ["-fsanitize=address"]

setup(
    ext_modules=[
        Extension(
            "jpegnet.codec._reader",
            sources=["jpegnet/codec/_reader.c"],
            include_dirs=[numpy.get_include()],
            libraries=["jpeg", "pthread"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]
)
