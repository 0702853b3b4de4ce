"""`jpegnet models` answers from the catalog, without torch, in well under 2 s; the catalog matches the registry."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from jpegnet.catalog import CATALOG, catalog_rows

REPO = Path(__file__).resolve().parents[1]


def test_catalog_names_are_the_registry():
    from jpegnet.models import list_models
    assert sorted(CATALOG) == list_models()


@pytest.mark.parametrize("name", ["resnet50", "dct_late_concat_rfa_thinner", "efficientnet_b7",
                                  "dct_efficientnet_b0", "cspdarknet53", "vgnetg_5_0mp_se"])
def test_catalog_entries_match_real_builds(name):
    from jpegnet.engine.zoo import model_table
    (built,) = model_table(name)
    (listed,) = catalog_rows(name)
    assert listed == built


def test_models_command_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t = time.perf_counter(); from jpegnet.cli import main; main(['models']); "
            "print('seconds', time.perf_counter() - t, 'torch' in sys.modules)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = out.strip().splitlines()
    assert lines[-1].split()[-1] == "False"  # torch never imported
    # CPU seconds of the whole process, interpreter start included (wall time would also count other jobs'
    # use of a shared machine); building the models instead takes about 24 s
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 2.0, cpu
    resnet = next(line for line in lines if line.startswith("resnet50 "))
    assert "rgb 224x224" in resnet and "25.56" in resnet
    assert sum(1 for line in lines[2:-1] if line.strip()) == len(CATALOG)
