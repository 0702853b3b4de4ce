"""jpegnet.engine.onnx_rewrite: zero Pads folded into the Conv that reads them, nothing else touched."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jpegnet import create_model  # noqa: E402
from jpegnet.engine.export import export_onnx  # noqa: E402
from jpegnet.engine.onnx_rewrite import constant_value, fold_pads_into_convs, inferred_shapes  # noqa: E402

from .test_serve_export import calibrate_batchnorm, real_inputs  # noqa: E402


def op_types(proto) -> collections.Counter:
    return collections.Counter(node.op_type for node in proto.graph.node)


def run(proto, x: np.ndarray = None) -> np.ndarray:
    x = X if x is None else x
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def int64(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def pad_conv_graph(pads, *, mode: str = "constant", value: float | None = None, conv_pads=None, extra_reader=None,
                   reader: str = "Conv", pads_from_shape: bool = False, input_dims=(1, 3, 9, 10)):
    """x (1, 3, 9, 10) → Pad → Conv 3×3 stride 2 (or another reader) → out; variants for what must not fold."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = []
    if pads_from_shape:  # pads from the input's size, as timm's Conv2dSame: bottom / right = (9 - H) and (10 - W)
        nodes += [helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Slice", ["s", "two", "four"], ["hw"]),
                  helper.make_node("Sub", ["nine_ten", "hw"], ["after"]),
                  helper.make_node("Concat", ["zeros", "zeros", "after"], ["pads"], axis=0)]
        initializers += [int64("two", [2]), int64("four", [4]), int64("nine_ten", [9, 10]), int64("zeros", [0, 0, 0])]
    else:
        nodes.append(helper.make_node("Constant", [], ["pads"], value=int64("pads_value", pads)))
    pad_inputs = ["x", "pads"]
    if value is not None:
        initializers.append(numpy_helper.from_array(np.array(value, dtype=np.float32), "value"))
        pad_inputs.append("value")
    nodes.append(helper.make_node("Pad", pad_inputs, ["xp"], mode=mode))
    if reader == "Conv":
        attrs = {"strides": [2, 2]} if conv_pads is None else {"strides": [2, 2], "pads": conv_pads}
        nodes.append(helper.make_node("Conv", ["xp", "w"], ["out"], **attrs))
    else:
        nodes.append(helper.make_node(reader, ["xp"], ["out"]))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "c", "h", "w"])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["xp"], ["also"]))
        outputs.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, ["n", "c", "h", "w"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))],
                              outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


X = np.random.default_rng(1).standard_normal((1, 3, 9, 10)).astype(np.float32)


@pytest.mark.parametrize("conv_pads", [None, [1, 0, 1, 2]])
def test_a_zero_pad_becomes_the_convs_own_pads(conv_pads):
    proto = pad_conv_graph([0, 0, 0, 1, 0, 0, 1, 2], conv_pads=conv_pads, value=0.0)
    expected = run(proto)
    assert fold_pads_into_convs(proto) == 1
    assert op_types(proto) == {"Conv": 1}  # the Pad and the Constant holding its pads are gone
    conv = proto.graph.node[0]
    (pads,) = [helper.get_attribute_value(a) for a in conv.attribute if a.name == "pads"]
    base = conv_pads or [0, 0, 0, 0]
    assert pads == [base[0] + 0, base[1] + 1, base[2] + 1, base[3] + 2]  # ONNX: (top, left, bottom, right)
    onnx.checker.check_model(proto)
    np.testing.assert_array_equal(run(proto), expected)


@pytest.mark.parametrize("case", ["reflect", "nonzero_value", "channel_axis", "two_readers", "not_a_conv",
                                  "from_an_unknown_shape"])
def test_pads_that_are_not_a_convs_zero_padding_stay(case):
    kwargs = {"reflect": dict(mode="reflect"), "nonzero_value": dict(value=1.5),
              "channel_axis": dict(pads=[0, 1, 0, 1, 0, 0, 1, 1]), "two_readers": dict(extra_reader=True),
              "not_a_conv": dict(reader="Relu"),
              # pads from sizes nobody knows before run time: H and W of the input are dynamic
              "from_an_unknown_shape": dict(pads_from_shape=True, input_dims=("N", 3, "H", "W"))}[case]
    proto = pad_conv_graph(kwargs.pop("pads", [0, 0, 0, 1, 0, 0, 1, 1]), **kwargs)
    before = proto.SerializeToString()
    assert fold_pads_into_convs(proto) == 0
    assert proto.SerializeToString() == before


def test_constant_value_follows_constant_arithmetic_and_fixed_sizes_only():
    proto = pad_conv_graph([0, 0, 0, 1, 0, 0, 1, 1])
    assert constant_value(proto, "pads").tolist() == [0, 0, 0, 1, 0, 0, 1, 1]
    assert constant_value(proto, "w").shape == (4, 3, 3, 3)  # an initializer
    assert constant_value(proto, "xp") is None  # reads the input's values
    sized = pad_conv_graph(None, pads_from_shape=True, input_dims=("batch", 3, 7, 9))
    assert constant_value(sized, "pads") is None  # without the inferred sizes, Shape is not a constant
    assert constant_value(sized, "pads", inferred_shapes(sized)).tolist() == [0, 0, 0, 0, 0, 0, 2, 1]
    # a value that depends on the dynamic batch size is not a constant of the graph
    batch = helper.make_model(helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], end=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [1])]), opset_imports=[helper.make_opsetid("", 17)])
    assert constant_value(batch, "s", inferred_shapes(batch)) is None


def test_pads_worked_out_from_fixed_sizes_fold_too():
    """timm's Conv2dSame computes its pads from the input's size at run time; with the spatial size fixed (every
    jpegnet export: only the batch is dynamic) they are constants, and fold."""
    proto = pad_conv_graph(None, pads_from_shape=True, input_dims=("batch", 3, 7, 9))
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 9)).astype(np.float32)
    expected = run(proto, x)
    assert fold_pads_into_convs(proto) == 1
    assert op_types(proto) == {"Conv": 1}  # Shape, Slice, Sub, Concat gone with the Pad
    np.testing.assert_array_equal(run(proto, x), expected)


def test_a_timm_teachers_run_time_pads_fold_one_pass_after_another():
    """A converted model with timm's tf_efficientnet_lite0 as its teacher: the remainder's two stride-2
    Conv2dSame pads come from Shape arithmetic, the second one's sizes unknown to shape inference until the first
    is folded. Both fold, no shape arithmetic is left, and the logits are the model's."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model("converted", teacher="timm:tf_efficientnet_lite0").eval()
    proto = onnx.load_from_string(export_onnx(model))
    types = op_types(proto)
    assert types["Pad"] == 0 and types["Shape"] == 0 and types["Ceil"] == 0
    inputs = model.example_inputs(3, (224, 224))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"y": inputs[0].numpy(), "cbcr": inputs[1].numpy()})[0]
    with torch.no_grad():
        expected = model(*inputs).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_lite0_exports_without_pads_and_its_int8_convs_read_quantized_activations():
    """EfficientNet-Lite's TF 'same' stride-2 convs export as Pad → Conv; folded, the float graph has none, its
    logits are the model's (at 224, on photos), and static int8 quantization leaves no float Pad (with its
    DequantizeLinear → QuantizeLinear detour) in front of those convs."""
    from jpegnet.engine.quantize import quantize_onnx

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=1000)
    photos = real_inputs(model, 224, 8)
    calibrate_batchnorm(model, photos)
    proto = onnx.load_from_string(export_onnx(model))
    assert op_types(proto)["Pad"] == 0  # where their pads went: test_efficientnet_lite's export test
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(photos[0][:2]).numpy()
    got = session.run(None, {"x": photos[0][:2].numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4
    int8 = onnx.load_from_string(quantize_onnx(proto.SerializeToString(), [(photos[0],)], method="minmax"))
    types = op_types(int8)
    assert types["Pad"] == 0 and types["QuantizeLinear"] > 0
