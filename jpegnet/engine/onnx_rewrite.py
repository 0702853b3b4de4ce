"""Rewrites of an exported ONNX graph that keep its function and make it cheaper to run.

`fold_pads_into_convs`: a Pad with constant zero padding on the spatial axes whose one reader is a Conv becomes
that Conv's own (possibly asymmetric) `pads`. PyTorch's Conv2d only pads symmetrically, so a TensorFlow "same"
stride-2 conv (EfficientNet-Lite's stem and stage entries, `jpegnet.layers.Conv2dTfSame`) exports as Pad → Conv.
ONNX Runtime fuses that pair itself in a float graph, but static int8 quantization sees the Pad first and leaves
it in float between a DequantizeLinear and a QuantizeLinear: on Lite0 those three ops around five convs were 31 %
of the int8 forward (ONNX Runtime, one thread, batch 8, AVX2 VM). Folded before quantization, the conv reads the
quantized activation directly.

Pads a module works out from its input's size at run time (timm's `Conv2dSame`: Shape → Gather → ... → Pad) are
constants too where the graph's spatial sizes are fixed, as in every jpegnet export (only the batch is dynamic):
`constant_value` evaluates such arithmetic on the inferred shapes, once for each of several values of each named
dynamic dimension, and folds only what comes out the same every time; a size shape inference does not know is
never guessed.
"""
from __future__ import annotations

import numpy as np

#: how far back a constant (the pads of a Pad node) is traced through nodes of constant inputs
MAX_CONSTANT_NODES = 256


def fold_pads_into_convs(proto) -> int:
    """Fold each foldable Pad of `proto` (an onnx.ModelProto, changed in place) into the Conv that reads it, then
    drop the nodes nothing reads any more (the pads' constant arithmetic). Returns how many were folded.

    Pass after pass: a Pad whose pads come from run-time shapes makes the sizes after it unknown to shape
    inference until it is folded, so the next such Pad becomes foldable on the next pass."""
    total = 0
    while True:
        folded = _fold_pass(proto)
        total += folded
        if not folded:
            return total


def _fold_pass(proto) -> int:
    from onnx import helper

    graph = proto.graph
    if not any(node.op_type == "Pad" for node in graph.node):
        return 0  # most graphs: no shape inference over (possibly hundreds of MB of) weights
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    shapes = inferred_shapes(proto)
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx"):
            continue
        conv = _the_conv_reading(pad, readers, graph_outputs)
        spatial = _spatial_zero_pads(proto, pad, shapes) if conv is not None else None
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


def _spatial_zero_pads(proto, pad, shapes: dict | None = None):
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
        value = constant_value(proto, inputs[2], shapes)
        if value is None or np.any(np.asarray(value) != 0):
            return None
    pads = constant_value(proto, inputs[1], shapes)
    if pads is None:
        return None
    pads = np.asarray(pads).reshape(-1)
    if pads.size != 8 or np.any(pads < 0) or np.any(pads[[0, 1, 4, 5]] != 0):
        return None
    return int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])


def inferred_shapes(proto) -> dict:
    """{tensor: [dim]} for the tensors whose rank onnx's shape inference knows: each dim an int (fixed), a str
    (a named dynamic dimension, e.g. the exported "batch") or None (unknown)."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer: only what it declares
        graph = proto.graph
    shapes = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                 for d in tensor_type.shape.dim]
    return shapes


#: values tried for each named dynamic dimension: a constant must come out the same for all
_DYNAMIC_TRIES = (2, 3, 7)


def constant_value(proto, name: str, shapes: dict | None = None):
    """The value of tensor `name` when it depends on initializers and Constant nodes only, or also on the Shape of
    tensors whose sizes `shapes` gives (`inferred_shapes`) where the result does not depend on their named dynamic
    dimensions (evaluated with onnx's reference runtime once per value in _DYNAMIC_TRIES); else None. A Shape
    whose slice holds an unknown size (None) is not a constant: sizes a Pad of run-time pads makes unknown to
    shape inference are found on the next pass, once that Pad is folded."""
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
        if id(node) in needed:
            continue
        needed[id(node)] = node
        if len(needed) > MAX_CONSTANT_NODES:
            return None
        if node.op_type == "Shape":  # a leaf: the sizes of its input, when known
            if shapes is None or node.input[0] not in shapes \
                    or None in _shape_slice(node, shapes[node.input[0]]):
                return None
            continue
        stack.extend(node.input)
    order = [node for node in graph.node if id(node) in needed]  # the graph's own (topological) order
    values = []
    for dynamic in _DYNAMIC_TRIES:
        nodes = [_shape_as_constant(node, shapes[node.input[0]], dynamic) if node.op_type == "Shape" else node
                 for node in order]
        sub = helper.make_graph(nodes, "constant", [], [helper.make_empty_tensor_value_info(name)],
                                initializer=[initializers[t] for t in sorted(used_initializers)])
        model = helper.make_model(sub, opset_imports=list(proto.opset_import))
        try:
            values.append(np.asarray(ReferenceEvaluator(model).run(None, {})[0]))
        except Exception:  # noqa: BLE001 - an op the reference runtime lacks: not a constant we can fold
            return None
        if not any(node.op_type == "Shape" for node in order):
            return values[0]  # no dynamic dimension involved: one evaluation is the value
    first = values[0]
    if any(v.shape != first.shape or not np.array_equal(v, first) for v in values[1:]):
        return None  # it depends on a dynamic dimension (the batch): not a constant of the graph
    return first


def _shape_slice(node, dims: list) -> list:
    """The part of dims a Shape node outputs (its opset-15 start / end)."""
    return list(dims)[slice(_attribute(node, "start"), _attribute(node, "end"))]


def _shape_as_constant(node, dims: list, dynamic: int):
    """A Constant node standing for Shape(`node`'s input) of sizes dims, `dynamic` for each named dynamic one."""
    from onnx import helper, numpy_helper

    values = np.array([d if isinstance(d, int) else dynamic for d in _shape_slice(node, dims)], dtype=np.int64)
    return helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(values))


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


__all__ = ["MAX_CONSTANT_NODES", "constant_value", "fold_pads_into_convs", "inferred_shapes"]
