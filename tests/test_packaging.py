"""Package metadata: torch / torchvision as ranges (jpegnet installs beside a user's torch), the versions CI
installs pinned in constraints.txt (used by the Makefile), safetensors a dependency, wheel targets present."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_torch_is_a_range_and_ci_pins_it():
    import torch
    import torchvision

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name in ("torch", "torchvision"):
        spec = [d for d in deps if re.match(rf"{name}\b(?!vision)", d)]
        assert spec and all("==" not in d and ">=" in d for d in spec), spec
    assert any(d.startswith("safetensors") for d in deps)
    pins = dict(re.findall(r"^(torch|torchvision)==([\w.]+)", (REPO / "constraints.txt").read_text(), re.M))
    assert pins == {"torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt -e '.[test]'" in makefile
    assert re.search(r"^wheel:", makefile, re.M) and re.search(r"^wheel-test:", makefile, re.M)
    assert "auditwheel repair" in makefile and "make wheel-test" in (REPO / ".ci/run").read_text()
