"""The model zoo's metadata, so `jpegnet models` answers without importing torch or building a model.

name: (representation, (height, width) default input, parameters at 1000 classes). Generated from the registry
by `python -m jpegnet.catalog --write`; tests/test_catalog.py checks it against the registry (names) and
against real builds (a sample of models), so a stale entry fails the suite.
"""
from __future__ import annotations

CATALOG = {
    "converted": ("dct", (224, 224), 5425650),
    "cspdarknet53": ("rgb", (256, 256), 27642184),
    "cspdensenet": ("rgb", (224, 224), 19185224),
    "cspdensenet201": ("rgb", (224, 224), 19185224),
    "cspdensenet_small": ("rgb", (224, 224), 698621),
    "cspresnet50": ("rgb", (256, 256), 21616168),
    "cspresnext50": ("rgb", (256, 256), 20569896),
    "dct_cspresnet50": ("dct", (256, 256), 20374888),
    "dct_deconvolution_rfa": ("dct", (224, 224), 28341608),
    "dct_downsampling": ("dct", (224, 224), 25479912),
    "dct_efficientnet_b0": ("dct", (224, 224), 5230962),
    "dct_efficientnet_lite0": ("dct", (224, 224), 4604648),
    "dct_efficientnet_lite1": ("dct", (240, 240), 5334248),
    "dct_efficientnet_lite2": ("dct", (256, 256), 5990312),
    "dct_efficientnet_lite3": ("dct", (304, 304), 8071784),
    "dct_efficientnet_lite4": ("dct", (384, 384), 12796136),
    "dct_late_concat": ("dct", (224, 224), 27927912),
    "dct_late_concat_rfa": ("dct", (224, 224), 27342184),
    "dct_late_concat_rfa_thinner": ("dct", (224, 224), 25885800),
    "dct_resnet50": ("dct", (224, 224), 24211816),
    "dct_upsampling": ("dct", (224, 224), 25291112),
    "dct_upsampling_rfa": ("dct", (224, 224), 28308840),
    "dct_vgnetg_1_0mp": ("dct", (224, 224), 970512),
    "dct_vgnetg_1_0mp_se": ("dct", (224, 224), 1101360),
    "dct_vgnetg_1_5mp": ("dct", (224, 224), 1466856),
    "dct_vgnetg_1_5mp_se": ("dct", (224, 224), 1649960),
    "dct_vgnetg_2_0mp": ("dct", (224, 224), 1952840),
    "dct_vgnetg_2_0mp_se": ("dct", (224, 224), 2261984),
    "dct_vgnetg_2_5mp": ("dct", (224, 224), 2418208),
    "dct_vgnetg_2_5mp_se": ("dct", (224, 224), 2812512),
    "dct_vgnetg_5_0mp": ("dct", (224, 224), 4864752),
    "dct_vgnetg_5_0mp_se": ("dct", (224, 224), 5705036),
    "efficientnet_b0": ("rgb", (224, 224), 5288548),
    "efficientnet_b1": ("rgb", (240, 240), 7794184),
    "efficientnet_b2": ("rgb", (260, 260), 9109994),
    "efficientnet_b3": ("rgb", (300, 300), 12233232),
    "efficientnet_b4": ("rgb", (380, 380), 19341616),
    "efficientnet_b5": ("rgb", (456, 456), 30389784),
    "efficientnet_b6": ("rgb", (528, 528), 43040704),
    "efficientnet_b7": ("rgb", (600, 600), 66347960),
    "efficientnet_lite0": ("rgb", (224, 224), 4652008),
    "efficientnet_lite1": ("rgb", (240, 240), 5416680),
    "efficientnet_lite2": ("rgb", (260, 260), 6092072),
    "efficientnet_lite3": ("rgb", (300, 300), 8197096),
    "efficientnet_lite4": ("rgb", (380, 380), 13006568),
    "hetconv_resnet50": ("rgb", (224, 224), 25557032),
    "hetconv_vgg16": ("rgb", (224, 224), 138361768),
    "hetconv_vgg16_cifar": ("rgb", (32, 32), 15495592),
    "octresnet50": ("rgb", (224, 224), 25557032),
    "octresnet50_a125": ("rgb", (224, 224), 25557032),
    "octresnet50_a25": ("rgb", (224, 224), 25557032),
    "octresnet50_a5": ("rgb", (224, 224), 25557032),
    "octresnet50_a75": ("rgb", (224, 224), 25557032),
    "resnet50": ("rgb", (224, 224), 25557032),
    "resnet50_compound_phi2": ("rgb", (304, 304), 55662904),
    "resnet50_short": ("rgb", (224, 224), 18509608),
    "resnet50_shorter": ("rgb", (224, 224), 17112360),
    "resnet50_thin0_5": ("rgb", (224, 224), 6917640),
    "resnet50_thin0_75": ("rgb", (224, 224), 14771992),
    "vgnetc_1_0mp": ("rgb", (224, 224), 1004036),
    "vgnetc_1_0mp_se": ("rgb", (224, 224), 1149868),
    "vgnetc_1_5mp": ("rgb", (224, 224), 1510376),
    "vgnetc_1_5mp_se": ("rgb", (224, 224), 1710032),
    "vgnetc_2_0mp": ("rgb", (224, 224), 2016244),
    "vgnetc_2_0mp_se": ("rgb", (224, 224), 2354560),
    "vgnetc_2_5mp": ("rgb", (224, 224), 2503376),
    "vgnetc_2_5mp_se": ("rgb", (224, 224), 2932904),
    "vgnetc_5_0mp": ("rgb", (224, 224), 5004108),
    "vgnetc_5_0mp_se": ("rgb", (224, 224), 5901324),
    "vgnete_1_0mp": ("rgb", (224, 224), 984044),
    "vgnete_1_0mp_se": ("rgb", (224, 224), 1129876),
    "vgnete_1_5mp": ("rgb", (224, 224), 1485896),
    "vgnete_1_5mp_se": ("rgb", (224, 224), 1685552),
    "vgnete_2_0mp": ("rgb", (224, 224), 1985800),
    "vgnete_2_0mp_se": ("rgb", (224, 224), 2324116),
    "vgnete_2_5mp": ("rgb", (224, 224), 2466408),
    "vgnete_2_5mp_se": ("rgb", (224, 224), 2895936),
    "vgnete_5_0mp": ("rgb", (224, 224), 4951200),
    "vgnete_5_0mp_se": ("rgb", (224, 224), 5848416),
    "vgnetf_1_0mp": ("rgb", (224, 224), 984044),
    "vgnetf_1_0mp_se": ("rgb", (224, 224), 1129876),
    "vgnetf_1_5mp": ("rgb", (224, 224), 1485896),
    "vgnetf_1_5mp_se": ("rgb", (224, 224), 1685552),
    "vgnetf_2_0mp": ("rgb", (224, 224), 1985800),
    "vgnetf_2_0mp_se": ("rgb", (224, 224), 2324116),
    "vgnetf_2_5mp": ("rgb", (224, 224), 2466408),
    "vgnetf_2_5mp_se": ("rgb", (224, 224), 2895936),
    "vgnetf_5_0mp": ("rgb", (224, 224), 4951200),
    "vgnetf_5_0mp_se": ("rgb", (224, 224), 5848416),
    "vgnetg_1_0mp": ("rgb", (224, 224), 1000256),
    "vgnetg_1_0mp_se": ("rgb", (224, 224), 1146088),
    "vgnetg_1_5mp": ("rgb", (224, 224), 1506056),
    "vgnetg_1_5mp_se": ("rgb", (224, 224), 1705712),
    "vgnetg_2_0mp": ("rgb", (224, 224), 2010412),
    "vgnetg_2_0mp_se": ("rgb", (224, 224), 2348728),
    "vgnetg_2_5mp": ("rgb", (224, 224), 2497040),
    "vgnetg_2_5mp_se": ("rgb", (224, 224), 2926568),
    "vgnetg_5_0mp": ("rgb", (224, 224), 4996980),
    "vgnetg_5_0mp_se": ("rgb", (224, 224), 5894196),
}


def catalog_rows(pattern: str = "*") -> list[dict]:
    """Rows of `jpegnet models` (the built-in registry's models matching `pattern`) from the catalog."""
    import fnmatch

    return [{"name": name, "representation": rep, "input": f"{rep} {h}x{w}", "params": params, "flops": None}
            for name, (rep, (h, w), params) in sorted(CATALOG.items()) if fnmatch.fnmatchcase(name, pattern)]


def render(rows: list[dict]) -> str:
    """The source of this module for `rows` (model_table rows)."""
    text = open(__file__).read()
    head, _, tail = text.partition("CATALOG = {\n")
    _, _, tail = tail.partition("\n}\n")
    body = "".join(f'    "{r["name"]}": ("{r["representation"]}", ({r["input"].split()[1].replace("x", ", ")}), '
                   f'{r["params"]}),\n' for r in rows)
    return head + "CATALOG = {\n" + body + "}\n" + tail


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m jpegnet.catalog --write   (rebuild this file from the registry)")
    from jpegnet.engine.zoo import model_table
    source = render(model_table("*"))
    with open(__file__, "w") as f:
        f.write(source)
