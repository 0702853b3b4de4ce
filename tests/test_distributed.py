"""torchrun + DDP: 2 CPU processes (gloo) train to the same weights as one process with the same global batch.

The training order comes from a DistributedSampler in both cases (one replica when alone), so the two
processes' half-batches of a step are exactly the single process's batch, and DDP's gradient average equals
the single batch's mean gradient. The model is a small network without BatchNorm (per-process batch
statistics would legitimately differ); it is registered only in the processes this file starts.

Run as a script, this file is `jpegnet ARGS...` with that test model registered (torchrun runs it so).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from test_engine_resume import make_tiny_dataset  # noqa: E402


def register_test_model() -> None:
    from torch import nn

    from jpegnet.models import InputConfig, JpegNetModel, register_model

    class TinyGroupNormNet(JpegNetModel):
        def __init__(self, num_classes: int = 1000):
            super().__init__()
            self.input_config = InputConfig("rgb", (32, 32))
            self.num_classes, self.num_features = num_classes, 16
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(16, num_classes)
            self.feature_info = [{"module": "features", "num_chs": 16, "reduction": 4}]

        def forward_features(self, x):
            return self.features(x)

        def forward_head(self, x, pre_logits=False):
            return x if pre_logits else self.fc(x)

        def reset_classifier(self, num_classes):
            self.fc = nn.Linear(16, num_classes)

    def tiny_groupnorm_net(num_classes: int = 1000, **kwargs):
        return TinyGroupNormNet(num_classes, **kwargs)

    register_model(tiny_groupnorm_net)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARGS = ["train", "--model", "tiny_groupnorm_net", "--epochs", "1", "--batch-size", "4", "--lr", "0.1",
        "--warmup-epochs", "0", "--deterministic", "--threads", "1", "--no-progress", "--no-tensorboard"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=2)  # 2 steps of 4
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    single = subprocess.Popen([sys.executable, str(HERE), *ARGS, "--data", str(data), "--out", str(tmp_path / "one")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(HERE), *ARGS,
                            "--data", str(data), "--out", str(tmp_path / "two")],
                           cwd=REPO, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                           timeout=240)
    out_single, _ = single.communicate(timeout=240)
    assert single.returncode == 0, out_single
    assert multi.returncode == 0, multi.stdout + multi.stderr
    assert "on 2 processes" in multi.stderr and "8 train / 4 val images" in multi.stderr
    assert multi.stderr.count("epoch 1/1:") == 1  # rank 0 alone prints

    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert one["global_step"] == two["global_step"] == 2
    initial = _initial_weights()
    moved = 0.0
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        moved = max(moved, float((value - initial[key]).abs().max()))
    assert moved > 1e-3, "training did not change the weights: the comparison would prove nothing"
    # Metrics are summed over processes: both see the whole training and validation sets.
    for k in ("train_loss", "train_top1", "val_top1", "val_loss"):
        assert one["history"][0][k] == pytest.approx(two["history"][0][k], rel=1e-5, abs=1e-6), k
    assert not (tmp_path / "two" / "log.csv").read_text().count("\n") > 2


def _initial_weights() -> dict:
    from jpegnet.engine.trainer import seed_everything
    from jpegnet.models import create_model, is_model

    if not is_model("tiny_groupnorm_net"):
        register_test_model()
    seed_everything(0)
    return create_model("tiny_groupnorm_net", num_classes=2).state_dict()


if __name__ == "__main__":
    register_test_model()
    from jpegnet.cli import main

    sys.exit(main(sys.argv[1:]))
