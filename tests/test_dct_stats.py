"""jpegnet.data.dct_stats: the DCT input statistics normalize the data they come from."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jpegnet.data import JpegFolder, compute_dct_stats, create_loader

from .data_helpers import folder  # noqa: F401  (folder: a fixture)


def test_dct_stats_normalize_the_data(folder):
    mean, std = compute_dct_stats(folder, input_size=(32, 32))
    assert len(mean) == len(std) == 192 and all(s > 0 for s in std)
    ds = JpegFolder(folder, "dct", train=False, input_size=32)
    raw = create_loader(ds, 6, input_config=type("Cfg", (), {"dct_mean": (0.0,) * 192, "dct_std": (1.0,) * 192}))
    (y, cbcr), _ = next(iter(raw))
    y64 = y.permute(0, 2, 3, 1).reshape(-1, 64).double()
    assert np.allclose(mean[:64], y64.mean(0).numpy(), rtol=1e-4, atol=1e-3)
    assert np.allclose(std[:64], y64.std(0, unbiased=False).numpy(), rtol=1e-3, atol=1e-3)
    cfg = type("Cfg", (), {"dct_mean": mean, "dct_std": std})
    (y, cbcr), _ = next(iter(create_loader(ds, 6, input_config=cfg)))
    flat = torch.cat([y.permute(0, 2, 3, 1).reshape(-1, 64).mean(0), cbcr.permute(0, 2, 3, 1).reshape(-1, 128).mean(0)])
    assert flat.abs().max() < 1e-3
    with pytest.raises(ValueError, match="192"):
        create_loader(ds, 2, input_config=type("Cfg", (), {"dct_mean": (0.0,), "dct_std": (1.0,)}))


def test_no_readable_image_is_a_typed_error(tmp_path, capsys):
    from jpegnet.cli import main
    from jpegnet.data import NoReadableImage
    from jpegnet.errors import JpegnetError

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(NoReadableImage, match="no readable image"):
        compute_dct_stats(tmp_path / "data", input_size=(32, 32))
    assert issubclass(NoReadableImage, JpegnetError) and issubclass(NoReadableImage, ValueError)
    out = tmp_path / "stats.json"
    assert main(["stats", str(tmp_path / "data"), "--size", "32", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jpegnet: error: ") and "no readable image" in err[-1]
    assert not out.exists()  # nothing half-written
