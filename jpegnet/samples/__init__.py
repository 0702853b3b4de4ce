"""The built-in sample set: 40 CC0 clothing photos in 10 classes (ImageFolder layout).

Shipped inside the package so that `make demo`, `jpegnet bench` and the tests have real JPEG files
on any machine. Licence: CC0 1.0 (LICENSE-CC0.txt beside this file).
"""
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent


def sample_files() -> list[Path]:
    """All sample JPEG paths, sorted by class then name."""
    return sorted(SAMPLES_DIR.glob("*/*.jpg"))


def sample_classes() -> list[str]:
    """The class folder names, sorted."""
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))
