"""Rewrites of an exported ONNX graph that keep its function and make it cheaper to run.

`fold_pads_into_convs`: a Pad with constant zero padding on the spatial axes whose one reader is a Conv becomes
that Conv's own (possibly asymmetric) `pads`. PyTorch's Conv2d only pads symmetrically, so a TensorFlow "same"
stride-2 conv (EfficientNet-Lite's stem and stage entries, `jpegnet.layers.Conv2dTfSame`) exports as Pad → Conv.
ONNX Runtime fuses that pair itself in a float graph, but static int8 quantization sees the Pad first and leaves
it in float between a DequantizeLinear and a QuantizeLinear: on Lite0 those three ops around five convs were 31 %
of the int8 forward (ONNX Runtime, one thread, batch 8, AVX2 VM). Folded before quantization, the conv reads the
quantized activation directly.
"""
from __future__ import annotations

import numpy as np

#: how far back a constant (the pads of a Pad node) is traced through nodes of constant inputs
MAX_CONSTANT_NODES = 64


def fold_pads_into_convs(proto) -> int:
    """Fold each foldable Pad of `proto` (an onnx.ModelProto, changed in place) into the Conv that reads it, then
    drop the nodes nothing reads any more (the pads' constant arithmetic). Returns how many were folded."""
    from onnx import helper

    graph = proto.graph
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx"):
            continue
        conv = _the_conv_reading(pad, readers, graph_outputs)
        spatial = _spatial_zero_pads(proto, pad) if conv is not None else None
        if spatial is None:
            continue
        top, left, bottom, right = spatial
        old = _attribute(conv, "pads") or [0, 0, 0, 0]
        new = [old[0] + top, old[1] + left, old[2] + bottom, old[3] + right]
        for attr in list(conv.attribute):
            if attr.name == "pads":
                conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    if folded:
        _drop_unread_nodes(graph)
    return len(folded)


def _attribute(node, name: str):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def _the_conv_reading(pad, readers: dict, graph_outputs: set):
    """The Conv that is the only reader of pad's output, reading it as its data input; else None."""
    users = readers.get(pad.output[0], [])
    if len(users) != 1 or pad.output[0] in graph_outputs:
        return None
    conv = users[0]
    if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or conv.input[0] != pad.output[0] \
            or list(conv.input[1:]).count(pad.output[0]):
        return None
    auto_pad = _attribute(conv, "auto_pad")
    if auto_pad not in (None, b"NOTSET", "NOTSET"):
        return None
    pads = _attribute(conv, "pads")
    if pads is not None and len(pads) != 4:  # a 2-D conv only
        return None
    return conv


def _spatial_zero_pads(proto, pad):
    """(top, left, bottom, right) of a 4-D Pad that adds zeros on the two spatial axes only, else None."""
    mode = _attribute(pad, "mode")
    if mode not in (None, b"constant", "constant"):
        return None
    inputs = list(pad.input) + [""] * (4 - len(pad.input))
    if not inputs[1]:  # opset < 11 keeps the pads in an attribute: not what the exporter writes; left alone
        return None
    if inputs[3]:  # opset 18 `axes`: not what the exporter writes at our opset; left alone
        return None
    if inputs[2]:
        value = constant_value(proto, inputs[2])
        if value is None or np.any(np.asarray(value) != 0):
            return None
    pads = constant_value(proto, inputs[1])
    if pads is None:
        return None
    pads = np.asarray(pads).reshape(-1)
    if pads.size != 8 or np.any(pads < 0) or np.any(pads[[0, 1, 4, 5]] != 0):
        return None
    return int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])


def constant_value(proto, name: str):
    """The value of tensor `name` when it depends on initializers and Constant nodes only (evaluated with onnx's
    reference runtime), else None."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    producer = {o: node for node in graph.node for o in node.output}
    inputs = {i.name for i in graph.input}
    needed, used_initializers, stack = {}, set(), [name]
    while stack:
        tensor = stack.pop()
        if tensor == "" or tensor in used_initializers:
            continue
        if tensor in initializers:
            used_initializers.add(tensor)
            continue
        node = producer.get(tensor)
        if node is None or tensor in inputs or node.domain not in ("", "ai.onnx") or node.op_type in ("If", "Loop", "Scan"):
            return None
        if id(node) not in needed:
            needed[id(node)] = node
            if len(needed) > MAX_CONSTANT_NODES:
                return None
            stack.extend(node.input)
    order = [node for node in graph.node if id(node) in needed]  # the graph's own (topological) order
    sub = helper.make_graph(order, "constant", [], [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED,
                                                                                 None)],
                            initializer=[initializers[t] for t in sorted(used_initializers)])
    model = helper.make_model(sub, opset_imports=list(proto.opset_import))
    try:
        return ReferenceEvaluator(model).run(None, {})[0]
    except Exception:  # noqa: BLE001 - an op the reference runtime lacks: not a constant we can fold
        return None


def _drop_unread_nodes(graph) -> None:
    """Remove nodes none of whose outputs is read (by a node or as a graph output), until none is left."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(o in read for o in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


__all__ = ["MAX_CONSTANT_NODES", "constant_value", "fold_pads_into_convs"]
