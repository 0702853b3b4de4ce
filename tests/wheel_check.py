"""`make wheel-test`: run by the fresh venv's Python, outside the source tree, after installing the wheel.

Checks that jpegnet is imported from the venv (not the checkout), that it reads JPEGs (the packaged samples,
coefficients and headers), and that the reader extension resolves the libjpeg-turbo bundled in the wheel's
jpegnet.libs/ folder, both as the dynamic linker reports it (ldd) and as this process actually mapped it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    import jpegnet
    from jpegnet.codec import _reader
    from jpegnet.samples import SAMPLES_DIR

    package = Path(jpegnet.__file__).resolve().parent
    venv = Path(sys.prefix).resolve()
    assert venv in package.parents, f"jpegnet imported from {package}, not from the venv {venv}"
    files = sorted(Path(SAMPLES_DIR).glob("*/*.jpg"))
    assert files, "the wheel lacks the sample JPEGs"
    coefs = jpegnet.read_coefficients(str(files[0]))
    header = jpegnet.read_header(files[0].read_bytes())
    assert (coefs.width, coefs.height) == (header.width, header.height) and coefs.dequantized(0).size > 0
    batch = jpegnet.read_coefficients_batch([str(f) for f in files[:8]], threads=2)
    assert len(batch) == min(8, len(files))

    bundled = package.parent / "jpegnet.libs"
    libs = sorted(p.name for p in bundled.glob("libjpeg*"))
    assert libs, f"no bundled libjpeg in {bundled}"
    ldd = subprocess.run(["ldd", _reader.__file__], capture_output=True, text=True, check=True).stdout
    line = next(l for l in ldd.splitlines() if "libjpeg" in l)
    resolved = Path(line.split("=>")[1].split("(")[0].strip()).resolve()
    assert resolved.parent == bundled.resolve(), f"ldd resolves libjpeg elsewhere: {line.strip()}"
    mapped = {Path(l.split()[-1]).resolve() for l in open("/proc/self/maps") if "libjpeg" in l}
    assert mapped and all(m.parent == bundled.resolve() for m in mapped), f"mapped libjpeg: {sorted(mapped)}"
    print(f"wheel ok: jpegnet {jpegnet.__version__} from {package}, read {len(batch) + 1} JPEGs "
          f"({coefs.width}x{coefs.height} first), libjpeg from {bundled.name}/{libs[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
