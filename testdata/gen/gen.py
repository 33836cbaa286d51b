#!/usr/bin/python3
"""Make the small ONNX fixture models of convcov-onnx and their expectations.

Run from anywhere (the paths below are relative to this file), with Debian's python3
(python3-onnx 1.12.0, numpy 1.24.2):

    /usr/bin/python3 testdata/gen/gen.py          # or: make fixtures

It replaces everything in testdata/models/fixtures/ with:

    NN_name.onnx           one small model per situation (some in their own folder)
    expect.json            what the Go tests check, machine-readable
    README.md              the same, one table per fixture

The output is byte-for-byte deterministic: fixed seeds, no timestamps, no uuids.
The expectations follow the "Definitions and policies" section of ../shared/DESIGN.md.
Depth i, D, d, stage, channels, multiplier and kernel are computed here from the graph by
the conventions written in CONVENTIONS below, and checked against hand-written values where
a fixture exists to pin one of them down; the action of each node (REWRITE, SKIP, KEEP,
REFUSE) and the keywords of its message are written by hand per fixture.
"""

import hashlib
import heapq
import json
import math
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import (TensorProto, checker, external_data_helper, helper, numpy_helper,
                  shape_inference)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "testdata", "models", "fixtures")

PRODUCER = "convcov-onnx testdata/gen/gen.py"
FLOAT, FLOAT16, BFLOAT16, DOUBLE = (TensorProto.FLOAT, TensorProto.FLOAT16,
                                    TensorProto.BFLOAT16, TensorProto.DOUBLE)
FLOAT_TYPES = {FLOAT, FLOAT16, BFLOAT16, DOUBLE}
CONV_OPS = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"}
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3}
DOWNSAMPLING_OPS = {"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool"}

CONVENTIONS = {
    "depthwise": "op_type Conv of the default domain in the main graph, group G >= 2, weight "
                 "[G*m, 1, k...] with 1 to 3 spatial dims, input channels C == G (C taken as G "
                 "when no shape gives it). ConvTranspose, QLinearConv, ConvInteger never count.",
    "D": "number of depthwise convs in the main graph, SKIPped ones included; convs inside "
         "If/Loop/Scan bodies or model-local functions are not counted (i, D, d are null).",
    "i": "1-based position among depthwise convs in the topological order of the main graph "
         "(Kahn's algorithm; among ready nodes the lowest node_index first; a node with a "
         "subgraph also waits for the outer names its subgraph reads).",
    "d": "(i-1)/(D-1); 0.0 when D == 1.",
    "stage": "0 at the graph inputs; +1 for every downsampling op (stride > 1 on any spatial "
             "axis of Conv/ConvInteger/QLinearConv/MaxPool/AveragePool/LpPool, or any "
             "SpaceToDepth) on the path from the graph inputs with the most such ops; a "
             "depthwise conv with its own stride > 1 counts itself.",
    "node": "node name; \"\" for unnamed nodes, which node_index (0-based position in the "
            "node list of its scope) identifies.",
    "scope": "\"main\" for the main graph, \"<outer node>/<attribute>\" for a subgraph "
             "(nested with more /), \"function:<domain>.<name>\" for a model-local function "
             "(followed by /<node>/<attribute> for a subgraph inside it).",
    "action": "REWRITE: tensor gets new values (same name, dims, data_type, storage field); "
              "SKIP: nothing of the node changes and a warning names the node (for inner "
              "nodes: the node, the outer node or the function) and matches keywords; KEEP: "
              "nothing of the node changes, no warning needed; REFUSE: the model is refused "
              "because of this node.",
    "keywords": "list; every entry must occur in the message (case-insensitive); an entry "
                "\"a|b\" is satisfied by either a or b.",
    "warn": "for a REWRITE: keywords of a warning that must accompany the rewrite; null: no "
            "warning is required (no_warning true: none may mention the node).",
    "outcome": "rewrite: output written, REWRITE tensors differ, everything else equal; "
               "unchanged: output written and equal to the input (message_keywords apply); "
               "refuse: exit 1, error matches refuse_keywords, no output file.",
    "tensors": "decoded original values of the float weight tensors that conv-family nodes "
               "of the main graph read (through Identity/Cast/Constant): sum and sum_sq "
               "exactly rounded (math.fsum; compare with a relative tolerance, 1e-12 is ample), "
               "first3 in the element order of the dims, and the storage field that held them; "
               "a sparse initializer is given as its dense values.",
    "ort": "runs: whether the original runs in ONNX Runtime on CPU with the inputs in feeds "
           "(symbolic dims filled in). The generator does not run ONNX Runtime; every value "
           "was confirmed once with ONNX Runtime 1.30.0 CPU (the library of make ort) "
           "through onnxruntime_go.",
}

DTYPE_NAME = {v: k for k, v in TensorProto.DataType.items()}


# ---------------------------------------------------------------------------------------------
# Tensors


def bf16_bits(values):
    """Round float32 values to bfloat16 (nearest, ties to even) and return the uint16 bits."""
    f = np.asarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (f + 0x7FFF + ((f >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def make_tensor(name, values, data_type=FLOAT, storage="raw_data"):
    """Build a TensorProto holding values in data_type, stored in the named field."""
    arr = np.asarray(values)
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(int(d) for d in arr.shape)
    flat = arr.reshape(-1)
    if data_type == FLOAT:
        a = flat.astype("<f4")
        if storage == "raw_data":
            t.raw_data = a.tobytes()
        elif storage == "float_data":
            t.float_data.extend(float(x) for x in a)
        else:
            raise ValueError(storage)
    elif data_type in (FLOAT16, BFLOAT16):
        bits = flat.astype("<f2").view("<u2") if data_type == FLOAT16 else bf16_bits(flat)
        if storage == "raw_data":
            t.raw_data = bits.tobytes()
        elif storage == "int32_data":
            t.int32_data.extend(int(x) for x in bits)
        else:
            raise ValueError(storage)
    elif data_type == DOUBLE:
        a = flat.astype("<f8")
        if storage == "raw_data":
            t.raw_data = a.tobytes()
        elif storage == "double_data":
            t.double_data.extend(float(x) for x in a)
        else:
            raise ValueError(storage)
    else:
        np_type = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[data_type]
        t.raw_data = flat.astype(np.dtype(np_type).newbyteorder("<")).tobytes()
        assert storage == "raw_data"
    return t


def decode(t):
    """Decode a float TensorProto (inline data) to a float64 array, independently of onnx."""
    dt = t.data_type
    raw = t.HasField("raw_data")
    if dt == FLOAT:
        a = np.frombuffer(t.raw_data, "<f4") if raw else np.array(t.float_data, "<f4")
    elif dt == FLOAT16:
        bits = np.frombuffer(t.raw_data, "<u2") if raw else np.array(t.int32_data, "<u2")
        a = bits.view("<f2")
    elif dt == BFLOAT16:
        bits = np.frombuffer(t.raw_data, "<u2") if raw else np.array(t.int32_data, "<u2")
        a = (bits.astype("<u4") << 16).view("<f4")
    elif dt == DOUBLE:
        a = np.frombuffer(t.raw_data, "<f8") if raw else np.array(t.double_data, "<f8")
    else:
        raise ValueError(DTYPE_NAME[dt])
    a = a.astype(np.float64)
    assert a.size == int(np.prod(t.dims)), t.name
    return a


def storage_of(t):
    if t.data_location == TensorProto.EXTERNAL:
        return "external"
    if t.HasField("raw_data"):
        return "raw_data"
    for field in ("float_data", "int32_data", "double_data", "int64_data"):
        if len(getattr(t, field)):
            return field
    return "empty"


def uniform(rng, shape, fan_in):
    """PyTorch's default Conv initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


def conv_weight(rng, shape):
    return uniform(rng, shape, int(np.prod(shape[1:])))


# ---------------------------------------------------------------------------------------------
# Graph building


class Graph:
    """Collects the parts of a GraphProto in the order they are added."""

    def __init__(self, name, rng):
        self.name = name
        self.rng = rng
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.value_info, self.sparse = [], []

    def input(self, name, elem, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name, elem, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def vinfo(self, name, elem, shape):
        self.value_info.append(helper.make_tensor_value_info(name, elem, shape))

    def init(self, name, values, data_type=FLOAT, storage="raw_data"):
        self.inits.append(make_tensor(name, values, data_type, storage))
        return name

    def weight(self, name, shape, data_type=FLOAT, storage="raw_data"):
        return self.init(name, conv_weight(self.rng, shape), data_type, storage)

    def node(self, op, inputs, outputs, name, domain=None, **attrs):
        n = helper.make_node(op, inputs, outputs, name=name or None, domain=domain, **attrs)
        self.nodes.append(n)
        return outputs[0] if outputs else None

    def conv(self, name, x, w, y, group=1, pads=None, strides=None, bias=None, **attrs):
        if pads is not None:
            attrs["pads"] = pads
        if strides is not None:
            attrs["strides"] = strides
        if group != 1:
            attrs["group"] = group
        inputs = [x, w] + ([bias] if bias else [])
        return self.node("Conv", inputs, [y], name, **attrs)

    def dw(self, name, x, y, channels, kernel, mult=1, wname=None, strides=None, pads=None,
           bias=False):
        """A depthwise Conv with a fresh float32 initializer; 'same' padding by default."""
        wname = wname or name + ".weight"
        self.weight(wname, [channels * mult, 1] + list(kernel))
        if pads is None:
            pads = [(k - 1) // 2 for k in kernel] + [k // 2 for k in kernel]
        b = None
        if bias:
            fan_in = int(np.prod(kernel))
            b = self.init(name + ".bias", uniform(self.rng, [channels * mult], fan_in))
        return self.conv(name, x, wname, y, group=channels, pads=pads, strides=strides, bias=b)

    def make(self, doc=None):
        g = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits,
                              doc_string=doc, value_info=self.value_info,
                              sparse_initializer=self.sparse)
        return g


def make_model(graph, opset=13, ir=7, extra_opsets=(), functions=(), doc=None):
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                          producer_version="1")
    m.ir_version = ir
    if functions:
        m.functions.extend(functions)
    if doc:
        m.doc_string = doc
    return m


# ---------------------------------------------------------------------------------------------
# Analysis of a model by the project's conventions


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def subgraphs(node):
    """(attribute name, GraphProto) for every graph attribute of node."""
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append((a.name, a.g))
        elif a.type == onnx.AttributeProto.GRAPHS:
            for j, g in enumerate(a.graphs):
                out.append(("%s[%d]" % (a.name, j), g))
    return out


def outer_reads(graph):
    """Names a subgraph reads that it neither defines nor receives as inputs."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {s.values.name for s in graph.sparse_initializer}
    reads = []
    for n in graph.node:
        for name in n.input:
            if name and name not in defined and name not in reads:
                reads.append(name)
        for _, g in subgraphs(n):
            for name in outer_reads(g):
                if name not in defined and name not in reads:
                    reads.append(name)
        defined.update(o for o in n.output if o)
    return reads


def node_reads(node):
    names = [x for x in node.input if x]
    for _, g in subgraphs(node):
        names += [x for x in outer_reads(g) if x not in names]
    return names


def kahn(nodes):
    """Topological order of node indices; among ready nodes the lowest index first."""
    producer = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = idx
    preds = [set(producer[x] for x in node_reads(n) if x in producer) for n in nodes]
    succs = [[] for _ in nodes]
    for idx, ps in enumerate(preds):
        for p in ps:
            succs[p].append(idx)
    waiting = [len(ps) for ps in preds]
    ready = [idx for idx, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        idx = heapq.heappop(ready)
        order.append(idx)
        for s in succs[idx]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, s)
    assert len(order) == len(nodes), "cycle"
    return order, preds


def downsamples(node):
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "SpaceToDepth":
        return True
    if node.op_type in DOWNSAMPLING_OPS:
        return any(s > 1 for s in (attr(node, "strides") or []))
    return False


def known_shapes(graph):
    shapes = {}
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = v.type.tensor_type
        if tt.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None
                              for d in tt.shape.dim]
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    for s in graph.sparse_initializer:
        shapes[s.values.name] = list(s.dims)
    for n in graph.node:
        if n.op_type == "Constant" and attr(n, "value") is not None:
            shapes[n.output[0]] = list(attr(n, "value").dims)
    return shapes


def resolve_weight(graph, name):
    """Follow Identity and float-to-float Cast back to ('initializer'|'constant', name)."""
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    while True:
        if name in inits:
            return "initializer", name
        n = producer.get(name)
        if n is None:
            return None, None
        if n.op_type == "Identity":
            name = n.input[0]
        elif n.op_type == "Cast" and attr(n, "to") in FLOAT_TYPES:
            src = n.input[0]
            if src in inits and inits[src].data_type not in FLOAT_TYPES:
                return None, None
            name = src
        elif n.op_type == "Constant":
            return "constant", n.name
        else:
            return None, None


def scan_main(model):
    """Per main-graph node index: depthwise facts, i, D, d and stage by the conventions."""
    g = model.graph
    nodes = list(g.node)
    order, preds = kahn(nodes)
    shapes = known_shapes(g)

    facts = {}
    for idx, n in enumerate(nodes):
        if n.op_type not in CONV_OPS:
            continue
        w = n.input[WEIGHT_INPUT[n.op_type]]
        ws = shapes.get(w)
        x = shapes.get(n.input[0])
        group = attr(n, "group", 1)
        c = x[1] if x and len(x) > 1 else None
        f = {"group": group, "channels_known": c, "wshape": ws, "depthwise": False,
             "contradiction": False}
        if (n.op_type == "Conv" and n.domain in ("", "ai.onnx") and group >= 2 and ws
                and 3 <= len(ws) <= 5 and ws[1] == 1 and ws[0] % group == 0):
            if c is not None and c != group:
                f["contradiction"] = True
            else:
                f["depthwise"] = True
                f["channels"] = group
                f["multiplier"] = ws[0] // group
                f["kernel"] = list(ws[2:])
        facts[idx] = f

    # Stages: most downsampling ops on any path from the inputs, own stride included.
    count = {}
    for idx in order:
        base = max([count[p] for p in preds[idx]], default=0)
        count[idx] = base + (1 if downsamples(nodes[idx]) else 0)

    dws = [idx for idx in order if facts.get(idx, {}).get("depthwise")]
    D = len(dws)
    for pos, idx in enumerate(dws, start=1):
        facts[idx]["i"] = pos
        facts[idx]["D"] = D
        facts[idx]["d"] = 0.0 if D == 1 else (pos - 1) / (D - 1)
        facts[idx]["stage"] = count[idx]
    return facts, D


def all_conv_nodes(model):
    """(scope, node_index, node, graph) for every conv-family node in every scope."""
    out = []

    def walk(graph, scope):
        for idx, n in enumerate(graph.node):
            if n.op_type in CONV_OPS:
                out.append((scope, idx, n, graph))
            prefix = "" if scope == "main" else scope + "/"
            for aname, sg in subgraphs(n):
                walk(sg, "%s%s/%s" % (prefix, n.name or "#%d" % idx, aname))

    walk(model.graph, "main")
    for f in model.functions:
        fscope = "function:%s.%s" % (f.domain, f.name)
        for idx, n in enumerate(f.node):
            if n.op_type in CONV_OPS:
                out.append((fscope, idx, n, None))
            for aname, sg in subgraphs(n):
                walk(sg, "%s/%s/%s" % (fscope, n.name or "#%d" % idx, aname))
    return out


# ---------------------------------------------------------------------------------------------
# Fixtures

FIXTURES = []


def fixture(fn):
    FIXTURES.append(fn)
    return fn


def rw(tensor, kind="initializer", warn=None, note=None, no_warning=False):
    return {"action": "REWRITE", "tensor": tensor, "tensor_kind": kind, "warn": warn,
            "note": note, "no_warning": no_warning}


def skip(*keywords, note=None, **extra):
    d = {"action": "SKIP", "keywords": list(keywords), "note": note}
    d.update(extra)
    return d


def keep(note=None, **extra):
    d = {"action": "KEEP", "note": note}
    d.update(extra)
    return d


@fixture
def f01():
    rng = np.random.default_rng(101)
    g = Graph("dw1d_speech", rng)
    g.input("audio_feats", FLOAT, ["N", 8, 32])
    g.dw("dw_k5", "audio_feats", "h1", 8, [5], bias=True)
    g.node("Relu", ["h1"], ["h1r"], "relu1")
    g.dw("dw_k3", "h1r", "h2", 8, [3])
    g.weight("pw.weight", [8, 8, 1])
    g.conv("pw", "h2", "pw.weight", "h3")
    g.dw("dw_k4_m2", "h3", "h4", 8, [4], mult=2, pads=[1, 2])
    g.output("h4", FLOAT, ["N", 16, 32])
    return dict(
        file="01_dw1d_speech.onnx",
        title="1-D depthwise convs (speech style): kernels 5, 3 and even 4 with multiplier 2",
        situation="Conv1d stack on [N, 8, 32] features: dw k=5 with bias, dw k=3, a 1x1 "
                  "pointwise Conv, then dw k=4 (pads [1,2]) with channel multiplier 2 "
                  "(weight [16,1,4], group 8).",
        model=make_model(g.make()),
        nodes={"dw_k5": rw("dw_k5.weight"), "dw_k3": rw("dw_k3.weight"), "pw": keep(),
               "dw_k4_m2": rw("dw_k4_m2.weight", note="new weight keeps dims [16,1,4]")},
        feeds={"N": 1},
        expect={"D": 3, "i": {"dw_k5": 1, "dw_k3": 2, "dw_k4_m2": 3}},
        notes="1-D kernels take ALGORITHM.md section 2.9 with n = 1; for the even kernel 4 "
              "the Gaussian centre is (k-1)/2 = 1.5.")


@fixture
def f02():
    rng = np.random.default_rng(102)
    g = Graph("dw3d_video", rng)
    g.input("clip", FLOAT, ["N", 4, 6, 8, 8])
    g.dw("dw_333", "clip", "h1", 4, [3, 3, 3], bias=True)
    g.node("Relu", ["h1"], ["h1r"], "relu1")
    g.dw("dw_135", "h1r", "h2", 4, [1, 3, 5])
    g.output("h2", FLOAT, ["N", 4, 6, 8, 8])
    return dict(
        file="02_dw3d_video.onnx",
        title="3-D depthwise convs (video style): kernels 3x3x3 and 1x3x5",
        situation="Conv3d on [N, 4, T=6, 8, 8]: a cubic 3x3x3 depthwise conv with bias, then "
                  "a 1x3x5 depthwise conv (pads [0,1,2,0,1,2]).",
        model=make_model(g.make()),
        nodes={"dw_333": rw("dw_333.weight"),
               "dw_135": rw("dw_135.weight", note="dims [4,1,1,3,5] kept in this order")},
        feeds={"N": 1},
        expect={"D": 2, "i": {"dw_333": 1, "dw_135": 2}},
        notes="3-D kernels take ALGORITHM.md section 2.9 with n = 3; the 1x3x5 weight must not "
              "be treated as 3x5 or transposed.")


@fixture
def f03a():
    rng = np.random.default_rng(103)
    g = Graph("storage_float_types", rng)
    g.input("x", FLOAT, ["N", 8, 8, 8])
    h = "x"
    specs = [("dw_f32_raw", FLOAT, "raw_data"), ("dw_f32_float_data", FLOAT, "float_data"),
             ("dw_f16_raw", FLOAT16, "raw_data"), ("dw_f16_int32_data", FLOAT16, "int32_data"),
             ("dw_bf16_raw", BFLOAT16, "raw_data"),
             ("dw_bf16_int32_data", BFLOAT16, "int32_data")]
    nodes = {}
    for j, (name, dt, storage) in enumerate(specs):
        wname = "W_" + name[3:]
        g.weight(wname, [8, 1, 3, 3], dt, storage)
        w = wname
        if dt != FLOAT:
            w = g.node("Cast", [wname], [wname + "_f32"], "cast_" + wname, to=FLOAT)
        out = "h%d" % (j + 1)
        g.conv(name, h, w, out, group=8, pads=[1, 1, 1, 1])
        h = out
        note = "data_type %s kept; storage field %s kept" % (DTYPE_NAME[dt], storage)
        if dt != FLOAT:
            note += "; the Cast node is KEEP"
        nodes[name] = rw(wname, note=note)
    g.output(h, FLOAT, ["N", 8, 8, 8])
    return dict(
        file="03a_storage_float_types.onnx",
        title="Weight storage: FLOAT, FLOAT16, BFLOAT16 each in raw_data and in the typed field",
        situation="Six chained depthwise 3x3 convs on a float32 graph. FLOAT weights in raw_data "
                  "and float_data; FLOAT16 in raw_data and int32_data (one bit pattern per "
                  "int32); BFLOAT16 in raw_data and int32_data. The 16-bit weights reach their "
                  "Conv through Cast(to=FLOAT).",
        model=make_model(g.make()),
        nodes=nodes, feeds={"N": 1}, infer=True,
        expect={"D": 6},
        notes="tensors[] gives the decoded original values for codec tests. bfloat16 values "
              "were rounded to nearest-even from float32 before storing.")


@fixture
def f03b():
    rng = np.random.default_rng(104)
    g = Graph("storage_double", rng)
    g.input("x", DOUBLE, ["N", 8, 8, 8])
    g.weight("W_f64_raw", [8, 1, 3, 3], DOUBLE, "raw_data")
    g.conv("dw_f64_raw", "x", "W_f64_raw", "h1", group=8, pads=[1, 1, 1, 1])
    g.weight("W_f64_double_data", [8, 1, 3, 3], DOUBLE, "double_data")
    g.conv("dw_f64_double_data", "h1", "W_f64_double_data", "h2", group=8, pads=[1, 1, 1, 1])
    g.output("h2", DOUBLE, ["N", 8, 8, 8])
    return dict(
        file="03b_storage_double.onnx",
        title="Weight storage: DOUBLE in raw_data and in double_data (float64 graph)",
        situation="A float64 graph with two depthwise 3x3 convs, one weight in raw_data, one in "
                  "double_data.",
        model=make_model(g.make()),
        nodes={"dw_f64_raw": rw("W_f64_raw", note="data_type DOUBLE, raw_data kept"),
               "dw_f64_double_data": rw("W_f64_double_data",
                                        note="data_type DOUBLE, double_data kept")},
        feeds={"N": 1},
        ort=(False, "ONNX Runtime has no CPU kernel for Conv on tensor(double): session "
                    "creation fails with 'Could not find an implementation for Conv(11)'; "
                    "verify must say so instead of failing the rewrite"),
        expect={"D": 2},
        notes="Valid ONNX (Conv's T includes double) that ONNX Runtime CPU cannot run.")


@fixture
def f04():
    rng = np.random.default_rng(105)
    g = Graph("stages", rng)
    g.input("img", FLOAT, ["N", 8, 64, 64])
    g.dw("dw_a", "img", "a", 8, [3, 3])
    g.node("MaxPool", ["a"], ["a2"], "pool_s1", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
           strides=[1, 1])
    g.weight("down.weight", [8, 8, 3, 3])
    g.conv("down", "a2", "down.weight", "b0", pads=[1, 1, 1, 1], strides=[2, 2])
    g.dw("dw_b", "b0", "b", 8, [3, 3])
    g.node("MaxPool", ["b"], ["c0"], "pool_s2", kernel_shape=[2, 2], strides=[2, 2])
    g.dw("dw_c", "c0", "c", 8, [3, 3])
    g.dw("dw_d_stride21", "c", "d", 8, [3, 3], strides=[2, 1])
    g.dw("dw_e", "d", "e", 8, [3, 3])
    g.node("MaxPool", ["e"], ["pa"], "branch_a_pool", kernel_shape=[4, 4], strides=[4, 4])
    g.node("AveragePool", ["e"], ["pb1"], "branch_b_avgpool", kernel_shape=[2, 2],
           strides=[2, 2])
    g.node("SpaceToDepth", ["pb1"], ["pb2"], "branch_b_s2d", blocksize=2)
    g.weight("branch_b_pw.weight", [8, 32, 1, 1])
    g.conv("branch_b_pw", "pb2", "branch_b_pw.weight", "pb3")
    g.node("Add", ["pa", "pb3"], ["m"], "merge")
    g.dw("dw_f", "m", "f", 8, [3, 3])
    g.output("f", FLOAT, ["N", 8, 2, 4])
    return dict(
        file="04_stages.onnx",
        title="Stages split by downsampling: strided Conv, MaxPool, strided depthwise, branches",
        situation="64x64 input. dw_a; MaxPool stride 1 (not downsampling); Conv 3x3 stride 2 "
                  "(not depthwise); dw_b; MaxPool stride 2; dw_c; dw_d_stride21 (its own stride "
                  "[2,1]); dw_e; then two branches that merge in an Add: MaxPool stride 4 (one "
                  "op) and AveragePool stride 2 -> SpaceToDepth -> 1x1 Conv (two ops); dw_f "
                  "after the Add.",
        model=make_model(g.make()),
        nodes={"dw_a": rw("dw_a.weight"), "down": keep(), "dw_b": rw("dw_b.weight"),
               "dw_c": rw("dw_c.weight"),
               "dw_d_stride21": rw("dw_d_stride21.weight",
                                   note="own stride [2,1] (one axis) puts it in the next stage"),
               "dw_e": rw("dw_e.weight"), "branch_b_pw": keep(),
               "dw_f": rw("dw_f.weight", note="longest path: 3 + AveragePool + SpaceToDepth")},
        feeds={"N": 1},
        expect={"D": 6, "stage": {"dw_a": 0, "dw_b": 1, "dw_c": 2, "dw_d_stride21": 3,
                                  "dw_e": 3, "dw_f": 5}},
        notes="Stage = downsampling ops on the path with the most of them: the MaxPool stride 1 "
              "and the 1x1 stride-1 Conv do not count; the branch through AveragePool and "
              "SpaceToDepth (2 ops) wins over the MaxPool branch (1 op), so dw_f is stage 5, "
              "not 4.")


@fixture
def f05():
    rng = np.random.default_rng(106)
    g = Graph("weight_paths", rng)
    g.input("x", FLOAT, ["N", 8, 8, 8])
    pads = [1, 1, 1, 1]
    g.weight("W_id", [8, 1, 3, 3])
    g.node("Identity", ["W_id"], ["W_id_1"], "id_1")
    g.node("Identity", ["W_id_1"], ["W_id_2"], "id_2")
    g.conv("dw_identity2", "x", "W_id_2", "h1", group=8, pads=pads)
    g.weight("W_f16", [8, 1, 3, 3], FLOAT16)
    g.node("Cast", ["W_f16"], ["W_f16_as_f32"], "cast_f16", to=FLOAT)
    g.conv("dw_cast_f16", "h1", "W_f16_as_f32", "h2", group=8, pads=pads)
    g.init("W_i8", rng.integers(-127, 128, size=[8, 1, 3, 3]), TensorProto.INT8)
    g.node("Cast", ["W_i8"], ["W_i8_as_f32"], "cast_i8", to=FLOAT)
    g.conv("dw_cast_int8", "h2", "W_i8_as_f32", "h3", group=8, pads=pads)
    g.init("W_q", rng.integers(-127, 128, size=[8, 1, 3, 3]), TensorProto.INT8)
    g.init("W_q_scale", np.array(0.003, dtype=np.float32))
    g.init("W_q_zero_point", np.array(0, dtype=np.int8), TensorProto.INT8)
    g.node("DequantizeLinear", ["W_q", "W_q_scale", "W_q_zero_point"], ["W_dq"], "dequant")
    g.conv("dw_dequant", "h3", "W_dq", "h4", group=8, pads=pads)
    g.init("W_flat", conv_weight(rng, [8, 1, 3, 3]).reshape(72))
    g.init("W_shape", np.array([8, 1, 3, 3], dtype=np.int64), TensorProto.INT64)
    g.node("Reshape", ["W_flat", "W_shape"], ["W_reshaped"], "reshape_w")
    g.conv("dw_reshape", "h4", "W_reshaped", "h5", group=8, pads=pads)
    g.weight("W_shared", [8, 1, 3, 3])
    g.conv("dw_shared_1", "h5", "W_shared", "h6", group=8, pads=pads)
    g.conv("dw_shared_2", "h6", "W_shared", "h7", group=8, pads=pads)
    g.weight("W_mul", [8, 1, 3, 3])
    g.conv("dw_also_mul", "h7", "W_mul", "h8", group=8, pads=pads)
    g.init("W_mul_scale", np.array([0.5], dtype=np.float32))
    g.node("Mul", ["W_mul", "W_mul_scale"], ["W_mul_scaled"], "mul_w")
    const = make_tensor("w_const_value", conv_weight(rng, [8, 1, 3, 3]))
    g.node("Constant", [], ["W_const"], "w_const", value=const)
    g.node("Identity", ["W_const"], ["W_const_id"], "id_const")
    g.conv("dw_constant", "h8", "W_const_id", "h9", group=8, pads=pads)
    g.output("h9", FLOAT, ["N", 8, 8, 8])
    g.output("W_mul_scaled", FLOAT, [8, 1, 3, 3])
    return dict(
        file="05_weight_paths.onnx",
        title="Where a depthwise weight comes from: followed, skipped, shared",
        situation="Nine chained depthwise 3x3 convs whose weights arrive through: two Identity "
                  "nodes; Cast(FLOAT16 -> FLOAT); Cast(INT8 -> FLOAT); DequantizeLinear; "
                  "Reshape of a flat initializer; one initializer shared by two convs; an "
                  "initializer that a Mul also reads (its product is a graph output); a "
                  "Constant node behind an Identity.",
        model=make_model(g.make()),
        nodes={
            "dw_identity2": rw("W_id", note="both Identity nodes KEEP"),
            "dw_cast_f16": rw("W_f16", note="rewritten in FLOAT16, raw_data kept; Cast KEEP"),
            "dw_cast_int8": skip("Cast|int8|non-float|not a float|integer",
                                 note="W_i8 KEEP: a Cast from INT8 is not a float-to-float Cast"),
            "dw_dequant": skip("DequantizeLinear", note="W_q, scale and zero point KEEP"),
            "dw_reshape": skip("Reshape", note="W_flat and W_shape KEEP"),
            "dw_shared_1": skip("W_shared", "shared|several|more than one|2 conv|two conv",
                                note="W_shared KEEP"),
            "dw_shared_2": skip("W_shared", "shared|several|more than one|2 conv|two conv",
                                note="W_shared KEEP"),
            "dw_also_mul": skip("W_mul", "mul_w|Mul|also read|another node|other node|shared",
                                note="W_mul KEEP; rewriting it would change the graph output "
                                     "W_mul_scaled"),
            "dw_constant": rw("w_const", kind="constant",
                              note="the Constant node's value attribute is rewritten; Identity "
                                   "KEEP"),
        },
        feeds={"N": 1},
        expect={"D": 9},
        notes="Every one of the nine is a depthwise Conv of the main graph, so D = 9 whatever "
              "happens to its weight. Policy: a weight read by any other node (a second Conv "
              "or a Mul) is skipped, because rewriting it would change more than one layer.")


@fixture
def f06():
    rng = np.random.default_rng(107)
    C, HW = 8, 16
    shp = ["N", C, HW, HW]
    g = Graph("subgraphs_functions", rng)
    g.input("x", FLOAT, shp)
    g.input("use_then", TensorProto.BOOL, [])
    g.dw("dw_main", "x", "y0", C, [3, 3])

    def branch(name, conv_name, src, out):
        b = Graph(name, rng)
        b.dw(conv_name, src, out, C, [3, 3])
        b.output(out, FLOAT, shp)
        return b.make()

    g.node("If", ["use_then"], ["y_if"], "if_branch",
           then_branch=branch("then_body", "dw_then", "y0", "then_out"),
           else_branch=branch("else_body", "dw_else", "y0", "else_out"))

    body = Graph("loop_body", rng)
    body.input("iter", TensorProto.INT64, [])
    body.input("cond_in", TensorProto.BOOL, [])
    body.input("v_in", FLOAT, shp)
    body.node("Identity", ["cond_in"], ["cond_out"], "loop_cond_id")
    body.dw("dw_loop", "v_in", "v_out", C, [3, 3])
    body.output("cond_out", TensorProto.BOOL, [])
    body.output("v_out", FLOAT, shp)
    g.init("loop_trip", np.array(2, dtype=np.int64), TensorProto.INT64)
    g.init("loop_cond", np.array(True), TensorProto.BOOL)
    g.node("Loop", ["loop_trip", "loop_cond", "y_if"], ["y_loop"], "loop", body=body.make())

    g.init("axes0", np.array([0], dtype=np.int64), TensorProto.INT64)
    g.node("Unsqueeze", ["y_loop", "axes0"], ["y_seq"], "to_seq")
    sbody = Graph("scan_body", rng)
    sbody.input("s_in", FLOAT, shp)
    sbody.dw("dw_scan", "s_in", "s_out", C, [3, 3])
    sbody.output("s_out", FLOAT, shp)
    g.node("Scan", ["y_seq"], ["y_scan_seq"], "scan", body=sbody.make(), num_scan_inputs=1)
    g.node("Squeeze", ["y_scan_seq", "axes0"], ["y_scan"], "from_seq")

    fn_nodes = [helper.make_node("Conv", ["fx", "fw"], ["fy"], name="dw_in_function", group=C,
                                 pads=[1, 1, 1, 1])]
    fn = helper.make_function("local.fn", "DwBlock", ["fx", "fw"], ["fy"], fn_nodes,
                              [helper.make_opsetid("", 15)])
    g.weight("W_fn", [C, 1, 3, 3])
    g.node("DwBlock", ["y_scan", "W_fn"], ["y_fn"], "call_dwblock", domain="local.fn")
    g.output("y_fn", FLOAT, shp)

    fn_note = "W_fn (main-graph initializer passed into the function) KEEP"
    return dict(
        file="06_subgraphs_functions.onnx",
        title="Depthwise convs inside If, Loop, Scan bodies and a model-local function",
        situation="One ordinary depthwise conv in the main graph, then an If whose then/else "
                  "branches each hold a depthwise conv (reading the outer name y0), a Loop "
                  "(2 trips) whose body holds one, a Scan whose body holds one, and a call to "
                  "the model-local function local.fn.DwBlock (FunctionProto in "
                  "model.functions) whose body is a depthwise conv on a weight passed in from "
                  "the main graph. IR 8, opset 15.",
        model=make_model(g.make(), opset=15, ir=8, extra_opsets=[("local.fn", 1)],
                         functions=[fn]),
        nodes={
            "dw_main": rw("dw_main.weight"),
            "dw_then": skip("dw_then|if_branch", "If|branch|subgraph",
                            note="dw_then.weight (branch initializer) KEEP"),
            "dw_else": skip("dw_else|if_branch", "If|branch|subgraph",
                            note="dw_else.weight KEEP"),
            "dw_loop": skip("dw_loop|loop", "Loop|body|subgraph", note="dw_loop.weight KEEP"),
            "dw_scan": skip("dw_scan|scan", "Scan|body|subgraph", note="dw_scan.weight KEEP"),
            "dw_in_function": skip("DwBlock|call_dwblock|dw_in_function", "function",
                                   note=fn_note, channels=C, multiplier=1, kernel=[3, 3]),
        },
        feeds={"N": 1},
        expect={"D": 1},
        notes="Only dw_main counts (D = 1, d = 0.0). The tool must not descend into "
              "subgraphs or functions to rewrite, and must not rewrite W_fn although it is a "
              "[8,1,3,3] initializer: no Conv of the main graph reads it.")


def init_as_input(ir, opset, rng):
    g = Graph("init_as_input_ir%d" % ir, rng)
    g.input("x", FLOAT, [1, 8, 8, 8])
    g.dw("dw", "x", "h1", 8, [3, 3], bias=True)
    g.node("Relu", ["h1"], ["h1r"], "relu")
    g.weight("pw.weight", [8, 8, 1, 1])
    g.conv("pw", "h1r", "pw.weight", "y")
    g.output("y", FLOAT, [1, 8, 8, 8])
    for t in g.inits:
        g.input(t.name, t.data_type, list(t.dims))
    return make_model(g.make(), opset=opset, ir=ir)


@fixture
def f07a():
    return dict(
        file="07a_init_as_input_ir3.onnx",
        title="Initializers also listed as graph inputs, IR 3 (the rule then)",
        situation="IR version 3, opset 8: every initializer (dw.weight, dw.bias, pw.weight) is "
                  "also a graph input, as IR < 4 requires of every initializer, so the listing "
                  "says nothing about a caller overriding the weight.",
        model=init_as_input(3, 8, np.random.default_rng(108)),
        nodes={"dw": rw("dw.weight", no_warning=True,
                        note="no warning about graph inputs may be printed"),
               "pw": keep()},
        expect={"D": 1},
        notes="The graph inputs listing the initializers stay as they are.")


@fixture
def f07b():
    return dict(
        file="07b_init_as_input_ir8.onnx",
        title="Initializers also listed as graph inputs, IR 8 (a caller can override them)",
        situation="IR version 8, opset 13: dw.weight, dw.bias and pw.weight are initializers "
                  "and also graph inputs, so a runtime caller may feed a different weight; the "
                  "stored one is only a default.",
        model=init_as_input(8, 13, np.random.default_rng(108)),
        nodes={"dw": rw("dw.weight", warn=["dw.weight|dw", "override|overrid|graph input"],
                        note="rewrite and warn that a caller can override the weight"),
               "pw": keep()},
        expect={"D": 1},
        notes="Same graph and values as 07a; only ir_version and opset differ.")


@fixture
def f08():
    rng = np.random.default_rng(109)
    g = Graph("group_contradicts_channels", rng)
    g.input("x", FLOAT, [1, 16, 8, 8])
    g.dw("dw_ok", "x", "h", 16, [3, 3])
    g.vinfo("h", FLOAT, [1, 16, 8, 8])
    g.weight("bad_group.weight", [8, 1, 3, 3])
    g.conv("bad_group", "h", "bad_group.weight", "y", group=8, pads=[1, 1, 1, 1])
    g.output("y", FLOAT, [1, 8, 8, 8])
    return dict(
        file="08_group_contradicts_channels.onnx",
        title="A group that contradicts the known input channels: refuse the model",
        situation="bad_group reads h, which value_info declares [1,16,8,8] (C = 16), but has "
                  "group = 8 and weight [8,1,3,3] (it would need C = 8). A valid depthwise "
                  "conv dw_ok comes first, so a tool that writes as it goes would leave a "
                  "file.",
        model=make_model(g.make()),
        infer=False,
        nodes={"dw_ok": keep(note="model refused: nothing is written"),
               "bad_group": {"action": "REFUSE", "keywords": ["bad_group", "group|channel"]}},
        outcome="refuse", refuse_keywords=["bad_group", "group|channel"],
        ort=(False, "the session loads but Run fails: 'Input channels C is not equal to "
                    "kernel channels * group. C: 16 kernel channels: 1 group: 8'"),
        expect={"D": None},
        notes="Exit status 1, the error names bad_group, no output file (not even a partial "
              "or temporary one). onnx 1.12's checker passes it: its Conv shape inference "
              "does not compare the channel count with group; the tool must.")


@fixture
def f09():
    rng = np.random.default_rng(110)
    g = Graph("no_shape_info", rng)
    g.input("x", FLOAT, ["N", "C", "H", "W"])
    g.weight("W_first", [8, 1, 3, 3])
    g.conv("dw_first", "x", "W_first", "h1", group=8, pads=[1, 1, 1, 1])
    g.node("Relu", ["h1"], ["h1r"], "relu")
    g.weight("W_second", [16, 1, 5, 5])
    g.conv("dw_second", "h1r", "W_second", "y", group=8, pads=[2, 2, 2, 2])
    g.output("y", FLOAT, [None, None, None, None])
    return dict(
        file="09_no_shape_info.onnx",
        title="No shape information: channels inferred from group",
        situation="The graph input is [N, C, H, W] with every dim symbolic, there is no "
                  "value_info and the output has rank 4 with no dim known. dw_first (group 8, "
                  "[8,1,3,3]) and dw_second (group 8, [16,1,5,5], multiplier 2) are still "
                  "depthwise: C = G.",
        model=make_model(g.make()),
        infer=False,
        nodes={"dw_first": rw("W_first"), "dw_second": rw("W_second")},
        feeds={"N": 1, "C": 8, "H": 16, "W": 16},
        expect={"D": 2},
        notes="Run in ORT with x of shape [1,8,16,16]. No value_info may be added to the "
              "output model.")


@fixture
def f10():
    rng = np.random.default_rng(111)
    g = Graph("unnamed_unsorted", rng)
    g.input("x", FLOAT, ["N", 4, 16, 16])
    g.weight("W_after", [8, 1, 3, 3])
    g.weight("W_k5", [8, 1, 5, 5])
    g.weight("W_stem", [8, 4, 1, 1])
    g.weight("W_k3", [8, 1, 3, 3])
    g.conv("", "m", "W_after", "y", group=8, pads=[1, 1, 1, 1])          # 0
    g.node("Add", ["p5", "p3"], ["m"], "")                              # 1
    g.conv("", "s", "W_k5", "p5", group=8, pads=[2, 2, 2, 2])          # 2
    g.conv("", "x", "W_stem", "s")                                       # 3
    g.conv("", "s", "W_k3", "p3", group=8, pads=[1, 1, 1, 1])          # 4
    g.output("y", FLOAT, ["N", 8, 16, 16])
    return dict(
        file="10_unnamed_unsorted.onnx",
        title="Unnamed nodes in a node list that is not topologically sorted",
        situation="Every node has an empty name. File order: [0] depthwise 3x3 on the Add's "
                  "output, [1] Add, [2] depthwise 5x5 on the stem output, [3] stem 1x1 Conv "
                  "4->8 (not depthwise), [4] depthwise 3x3 on the stem output (parallel to [2]).",
        model=make_model(g.make()),
        infer=False,
        nodes={"#0": rw("W_after"), "#2": rw("W_k5"), "#3": keep(), "#4": rw("W_k3")},
        feeds={"N": 1},
        expect={"D": 3, "i": {"#2": 1, "#4": 2, "#0": 3}},
        notes="Identify nodes by node_index (their weight names are unique). Kahn's order: "
              "[3], [2], [4], [1], [0]; the parallel [2] and [4] become ready together and the "
              "lower index [2] goes first. onnx.checker rejects the order; ONNX Runtime sorts "
              "and runs it. The output may keep the node order or sort it; names stay empty.")


@fixture
def f11():
    rng = np.random.default_rng(112)
    g = Graph("depthwise_lookalikes", rng)
    g.input("x", FLOAT, [1, 8, 8, 8])
    g.init("x_scale", np.array(0.02, dtype=np.float32))
    g.init("x_zero_point", np.array(128, dtype=np.uint8), TensorProto.UINT8)
    g.node("QuantizeLinear", ["x", "x_scale", "x_zero_point"], ["xq"], "quant")
    g.init("qconv.weight", rng.integers(-127, 128, size=[8, 1, 3, 3]), TensorProto.INT8)
    g.init("qconv.w_scale", np.array(0.01, dtype=np.float32))
    g.init("qconv.w_zero_point", np.array(0, dtype=np.int8), TensorProto.INT8)
    g.init("qconv.y_scale", np.array(0.05, dtype=np.float32))
    g.init("qconv.y_zero_point", np.array(128, dtype=np.uint8), TensorProto.UINT8)
    g.node("QLinearConv", ["xq", "x_scale", "x_zero_point", "qconv.weight", "qconv.w_scale",
                           "qconv.w_zero_point", "qconv.y_scale", "qconv.y_zero_point"],
           ["yq"], "qconv", group=8, pads=[1, 1, 1, 1])
    g.node("DequantizeLinear", ["yq", "qconv.y_scale", "qconv.y_zero_point"], ["yf"], "dequant")
    g.weight("convT.weight", [8, 1, 3, 3])
    g.node("ConvTranspose", ["yf", "convT.weight"], ["yt"], "convT", group=8,
           pads=[1, 1, 1, 1])
    g.init("convint.weight", rng.integers(0, 256, size=[8, 1, 3, 3]), TensorProto.UINT8)
    g.init("convint.w_zero_point", np.array(128, dtype=np.uint8), TensorProto.UINT8)
    g.node("ConvInteger", ["xq", "convint.weight", "x_zero_point", "convint.w_zero_point"],
           ["yi"], "convint", group=8, pads=[1, 1, 1, 1])
    g.node("Cast", ["yi"], ["yi_f"], "cast_int", to=FLOAT)
    g.init("int_scale", np.array(0.0002, dtype=np.float32))
    g.node("Mul", ["yi_f", "int_scale"], ["yi_s"], "rescale")
    g.node("Add", ["yt", "yi_s"], ["y"], "merge")
    g.output("y", FLOAT, [1, 8, 8, 8])
    note = "weight [8,1,3,3] with group 8 looks depthwise, but only Conv counts"
    return dict(
        file="11_depthwise_lookalikes.onnx",
        title="ConvTranspose, QLinearConv and ConvInteger with depthwise-looking weights",
        situation="Each of the three has group = 8 on 8 channels and a weight [8,1,3,3]: "
                  "QLinearConv (uint8 activations, int8 weights), ConvTranspose (float), "
                  "ConvInteger (uint8 weights). There is no Conv node at all.",
        model=make_model(g.make()),
        nodes={"qconv": keep(note), "convT": keep(note), "convint": keep(note)},
        outcome="unchanged", message_keywords=["no depthwise|0 depthwise"],
        expect={"D": 0},
        notes="D = 0: the tool says it found no depthwise convolution, exits 0 and writes an "
              "output equal to the input (issue 2).")


@fixture
def f12():
    rng = np.random.default_rng(113)
    g = Graph("sparse_weight", rng)
    g.input("x", FLOAT, ["N", 8, 8, 8])
    g.dw("dw_dense", "x", "h", 8, [3, 3])
    dense = conv_weight(rng, [8, 1, 3, 3]).reshape(-1)
    keep_idx = np.sort(rng.choice(72, size=24, replace=False)).astype(np.int64)
    values = make_tensor("W_sparse", dense[keep_idx].astype(np.float32))
    indices = make_tensor("W_sparse_indices", keep_idx, TensorProto.INT64)
    g.sparse.append(helper.make_sparse_tensor(values, indices, [8, 1, 3, 3]))
    g.conv("dw_sparse", "h", "W_sparse", "y", group=8, pads=[1, 1, 1, 1])
    g.output("y", FLOAT, ["N", 8, 8, 8])
    return dict(
        file="12_sparse_weight.onnx",
        title="A sparse initializer as a depthwise weight",
        situation="dw_dense has an ordinary initializer; dw_sparse reads W_sparse from "
                  "graph.sparse_initializer (24 of 72 values, linear INT64 indices, dims "
                  "[8,1,3,3]).",
        model=make_model(g.make()),
        infer=False,
        nodes={"dw_dense": rw("dw_dense.weight"),
               "dw_sparse": skip("sparse", note="the SparseTensorProto is KEEP",
                                 channels=8, multiplier=1, kernel=[3, 3])},
        feeds={"N": 1},
        ort=(True, "ONNX Runtime densifies sparse initializers on load"),
        expect={"D": 2},
        notes="dw_sparse counts in D. tensors[] gives the dense values (zeros included) of "
              "W_sparse.")


def convmixer(name, depth, k, seed):
    rng = np.random.default_rng(seed)
    C = 8
    g = Graph(name, rng)
    g.input("img", FLOAT, ["N", 3, 16, 16])
    g.weight("stem.weight", [C, 3, 2, 2])
    g.init("stem.bias", np.zeros(C, dtype=np.float32))
    g.conv("stem", "img", "stem.weight", "s0", strides=[2, 2], bias="stem.bias")
    g.node("Relu", ["s0"], ["s1"], "stem_relu")
    h = bn(g, "stem_bn", "s1", C)
    nodes = {"stem": keep()}
    for j in range(depth):
        p = "blk%d" % j
        g.dw(p + ".dw", h, p + ".a", C, [k, k], bias=True)
        g.node("Relu", [p + ".a"], [p + ".r"], p + ".relu")
        b = bn(g, p + ".bn", p + ".r", C)
        g.node("Add", [b, h], [p + ".res"], p + ".add")
        g.weight(p + ".pw.weight", [C, C, 1, 1])
        g.conv(p + ".pw", p + ".res", p + ".pw.weight", p + ".out")
        h = p + ".out"
        nodes[p + ".dw"] = rw(p + ".dw.weight")
        nodes[p + ".pw"] = keep()
    g.output(h, FLOAT, ["N", C, 8, 8])
    return make_model(g.make()), nodes


def bn(g, name, x, C):
    g.init(name + ".scale", 1.0 + 0.1 * g.rng.standard_normal(C))
    g.init(name + ".bias", 0.1 * g.rng.standard_normal(C))
    g.init(name + ".mean", 0.1 * g.rng.standard_normal(C))
    g.init(name + ".var", 1.0 + 0.1 * g.rng.uniform(size=C))
    y = name + ".y"
    g.node("BatchNormalization", [x, name + ".scale", name + ".bias", name + ".mean",
                                  name + ".var"], [y], name)
    return y


@fixture
def f13a():
    m, nodes = convmixer("convmixer_d8_k9", 8, 9, 114)
    return dict(
        file="13a_convmixer_d8_k9.onnx",
        title="ConvMixer-like stack: D = 8 depthwise 9x9, 8 channels",
        situation="Patch stem (Conv 2x2 stride 2, 3->8) + Relu + BatchNormalization, then 8 "
                  "blocks of depthwise 9x9 Conv (pads 4, bias) -> Relu -> BatchNormalization "
                  "-> Add residual -> 1x1 Conv. Same D and kernel as stack_example.json's "
                  "first case (D=8, k=9, cifar10_patch2).",
        model=m, nodes=nodes, feeds={"N": 1}, infer=False,
        expect={"D": 8},
        notes="For schedule tests: blk{j}.dw has i = j+1, d = j/7. All blocks are stage 1: "
              "the stride-2 patch stem comes before the first depthwise conv.")


@fixture
def f13b():
    m, nodes = convmixer("convmixer_d12_k7", 12, 7, 115)
    return dict(
        file="13b_convmixer_d12_k7.onnx",
        title="ConvMixer-like stack: D = 12 depthwise 7x7, 8 channels",
        situation="The same block structure as 13a with 12 blocks and 7x7 depthwise kernels "
                  "(pads 3): stack_example.json's second case (D=12, k=7, imagenet_thawed).",
        model=m, nodes=nodes, feeds={"N": 1}, infer=False,
        expect={"D": 12},
        notes="blk{j}.dw has i = j+1, d = j/11; all stage 1.")


def external_graph(rng):
    g = Graph("external_data", rng)
    g.input("x", FLOAT, ["N", 8, 8, 8])
    g.dw("dw1", "x", "h1", 8, [3, 3], wname="W_dw1", bias=True)
    g.weight("W_pw", [8, 8, 1, 1])
    g.conv("pw", "h1", "W_pw", "h2")
    g.dw("dw2", "h2", "y", 8, [3, 3], wname="W_dw2")
    g.output("y", FLOAT, ["N", 8, 8, 8])
    return make_model(g.make())


EXT_NODES = {"dw1": rw("W_dw1", note="data in the external file"), "pw": keep(),
             "dw2": rw("W_dw2", note="data in the external file")}


@fixture
def f14a():
    m = external_graph(np.random.default_rng(116))
    external_data_helper.convert_model_to_external_data(
        m, all_tensors_to_one_file=True, location="weights.bin", size_threshold=128)
    return dict(
        file="14a_external_one_file/model.onnx",
        title="External data, one file: two depthwise weights and a pointwise weight",
        situation="Made with onnx.external_data_helper.convert_model_to_external_data "
                  "(all_tensors_to_one_file, location weights.bin, size_threshold 128): "
                  "W_dw1, W_pw and W_dw2 live in weights.bin beside the model with offsets and "
                  "lengths; the small bias dw1.bias stays inline.",
        model=m, nodes=EXT_NODES, feeds={"N": 1},
        expect={"D": 2},
        notes="The input's weights.bin must not change. The output must load from its own "
              "folder (inline or external data). Locations are plain relative file names.")


@fixture
def f14b():
    m = external_graph(np.random.default_rng(117))
    for t in m.graph.initializer:
        if t.name == "W_dw1":
            external_data_helper.set_external_data(t, "part_a.bin")
        elif t.name in ("W_pw", "W_dw2"):
            external_data_helper.set_external_data(t, "part_b.bin")
    return dict(
        file="14b_external_two_files/model.onnx",
        title="External data, two files",
        situation="Made with onnx.external_data_helper.set_external_data and onnx.save: W_dw1 "
                  "in part_a.bin; W_pw (offset 0) and W_dw2 (after it) in part_b.bin; the "
                  "bias inline.",
        model=m, nodes=EXT_NODES, feeds={"N": 1},
        expect={"D": 2},
        notes="Both data files must be unchanged after a run that writes elsewhere.")


@fixture
def f15():
    rng = np.random.default_rng(118)
    C = 8
    g = Graph("weights_not_rewritable", rng)
    g.input("x", FLOAT, [1, C, 8, 8])
    pads = [1, 1, 1, 1]
    g.init("W_i8", rng.integers(-127, 128, size=[C, 1, 3, 3]), TensorProto.INT8)
    g.conv("dw_int8", "x", "W_i8", "h1", group=C, pads=pads)
    g.vinfo("h1", FLOAT, [1, C, 8, 8])
    g.inits.append(helper.make_tensor("W_str", TensorProto.STRING, [C, 1, 3, 3],
                                      [b"0.25"] * (C * 9)))
    g.conv("dw_string", "h1", "W_str", "h2", group=C, pads=pads)
    g.vinfo("h2", FLOAT, [1, C, 8, 8])
    g.init("W_hwio", conv_weight(rng, [C, 1, 3, 3]).transpose(2, 3, 1, 0))
    g.node("Transpose", ["W_hwio"], ["W_oihw"], "transpose_w", perm=[3, 2, 0, 1])
    g.vinfo("W_oihw", FLOAT, [C, 1, 3, 3])
    g.conv("dw_transpose", "h2", "W_oihw", "h3", group=C, pads=pads)
    g.vinfo("h3", FLOAT, [1, C, 8, 8])
    g.dw("dw_plain", "h3", "y", C, [3, 3])
    g.output("y", FLOAT, [1, C, 8, 8])
    return dict(
        file="15_weights_not_rewritable.onnx",
        title="Depthwise weights of integer and string type, and one behind a Transpose",
        situation="Four chained depthwise 3x3 convs on 8 channels: dw_int8 reads an INT8 "
                  "initializer directly (no Cast), dw_string a STRING initializer, "
                  "dw_transpose the output of a Transpose of an HWIO float initializer "
                  "(perm [3,2,0,1]), dw_plain an ordinary float initializer. value_info gives "
                  "the shapes, since shape inference rejects the integer and string weights.",
        model=make_model(g.make()),
        infer=False,
        nodes={
            "dw_int8": skip("W_i8", "INT8", note="W_i8 KEEP: an INT8 tensor cannot hold "
                                                 "sampled filters"),
            "dw_string": skip("W_str", "STRING", note="W_str KEEP"),
            "dw_transpose": skip("Transpose", "transpose_w", note="W_hwio KEEP: the weight "
                                                                  "is computed, not stored"),
            "dw_plain": rw("dw_plain.weight"),
        },
        ort=(False, "Conv takes no INT8 or STRING weight: the session does not load"),
        expect={"D": 4},
        notes="All four count in D (they are depthwise by shape); only dw_plain is "
              "rewritten. A rewrite must not turn the integer or string tensor into floats.")


@fixture
def f16():
    rng = np.random.default_rng(119)
    C, HW = 8, 16
    shp = ["N", C, HW, HW]
    g = Graph("nested_subgraphs", rng)
    g.input("x", FLOAT, shp)
    g.input("cond", TensorProto.BOOL, [])
    g.dw("dw_main", "x", "y0", C, [3, 3])
    g.weight("W_outer", [C, 1, 3, 3])
    g.conv("dw_shared_outer", "y0", "W_outer", "y1", group=C, pads=[1, 1, 1, 1])

    # A Loop whose body holds an If whose then branch holds a depthwise conv.
    then_b = Graph("loop_if_then", rng)
    then_b.dw("dw_loop_if_then", "v_in", "t_out", C, [3, 3])
    then_b.output("t_out", FLOAT, shp)
    else_b = Graph("loop_if_else", rng)
    else_b.node("Identity", ["v_in"], ["e_out"], "loop_if_else_id")
    else_b.output("e_out", FLOAT, shp)
    body = Graph("loop_body", rng)
    body.input("iter", TensorProto.INT64, [])
    body.input("cond_in", TensorProto.BOOL, [])
    body.input("v_in", FLOAT, shp)
    body.node("Identity", ["cond_in"], ["cond_out"], "loop_cond_id")
    body.node("If", ["cond"], ["v_out"], "if_in_loop", then_branch=then_b.make(),
              else_branch=else_b.make())
    body.output("cond_out", TensorProto.BOOL, [])
    body.output("v_out", FLOAT, shp)
    g.init("loop_trip", np.array(2, dtype=np.int64), TensorProto.INT64)
    g.init("loop_cond", np.array(True), TensorProto.BOOL)
    g.node("Loop", ["loop_trip", "loop_cond", "y1"], ["y_loop"], "loop", body=body.make())

    # A Scan whose body convolves with the main graph's W_outer.
    g.init("axes0", np.array([0], dtype=np.int64), TensorProto.INT64)
    g.node("Unsqueeze", ["y_loop", "axes0"], ["y_seq"], "to_seq")
    sbody = Graph("scan_body", rng)
    sbody.input("s_in", FLOAT, shp)
    sbody.conv("dw_scan_outer_w", "s_in", "W_outer", "s_out", group=C, pads=[1, 1, 1, 1])
    sbody.output("s_out", FLOAT, shp)
    g.node("Scan", ["y_seq"], ["y_scan_seq"], "scan_outer", body=sbody.make(),
           num_scan_inputs=1)
    g.node("Squeeze", ["y_scan_seq", "axes0"], ["y_scan"], "from_seq")

    # A model-local function whose body holds an If with a depthwise conv in one branch.
    fthen = Graph("fn_if_then", rng)
    fthen.dw("dw_fn_if_then", "fx", "ft_out", C, [3, 3])
    fthen.output("ft_out", FLOAT, shp)
    felse = Graph("fn_if_else", rng)
    felse.node("Identity", ["fx"], ["fe_out"], "fn_if_else_id")
    felse.output("fe_out", FLOAT, shp)
    fn_nodes = [helper.make_node("If", ["fcond"], ["fy"], name="if_in_fn",
                                 then_branch=fthen.make(), else_branch=felse.make())]
    fn = helper.make_function("local.fn", "NestedFn", ["fx", "fcond"], ["fy"], fn_nodes,
                              [helper.make_opsetid("", 15)])
    g.node("NestedFn", ["y_scan", "cond"], ["y_fn"], "call_nested", domain="local.fn")
    g.output("y_fn", FLOAT, shp)

    return dict(
        file="16_nested_subgraphs.onnx",
        title="Depthwise convs in nested subgraphs, and a main-graph weight read by a subgraph",
        situation="dw_main is an ordinary depthwise conv; dw_shared_outer reads W_outer, which "
                  "the depthwise conv dw_scan_outer_w inside the body of Scan node scan_outer "
                  "also reads (an outer name); Loop node loop has a body with If node "
                  "if_in_loop whose then branch holds dw_loop_if_then; the model-local "
                  "function local.fn.NestedFn holds If node if_in_fn whose then branch holds "
                  "dw_fn_if_then. IR 8, opset 15.",
        model=make_model(g.make(), opset=15, ir=8, extra_opsets=[("local.fn", 1)],
                         functions=[fn]),
        infer=False,
        nodes={
            "dw_main": rw("dw_main.weight"),
            "dw_shared_outer": skip("W_outer", "scan_outer",
                                    note="W_outer KEEP: rewriting it would change the conv in "
                                         "the Scan body too"),
            "dw_loop_if_then": skip("if_in_loop", "then_branch",
                                    note="dw_loop_if_then.weight KEEP"),
            "dw_scan_outer_w": skip("scan_outer", "body", channels=C,
                                    multiplier=1, kernel=[3, 3], note="W_outer KEEP"),
            "dw_fn_if_then": skip("NestedFn", "if_in_fn", "function",
                                  note="dw_fn_if_then.weight KEEP"),
        },
        feeds={"N": 1},
        expect={"D": 2},
        notes="D = 2: dw_main (rewritten) and dw_shared_outer (skipped); the three convs "
              "inside subgraphs are reported and never counted, whatever their depth of "
              "nesting. Messages name the innermost outer node or the function.")


# ---------------------------------------------------------------------------------------------
# Writing and checking


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_checker(path):
    # Check an in-memory copy: given a path, onnx 1.12's full check writes the inferred
    # shapes back into the file.
    try:
        checker.check_model(onnx.load(path), full_check=True)
        return {"passes": True, "error": None}
    except Exception as e:  # the checker raises several types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"passes": False, "error": first}


def feeds_of(model, dims):
    inits = {t.name for t in model.graph.initializer}
    feeds = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        shape = []
        for d in tt.shape.dim:
            shape.append(d.dim_value if d.HasField("dim_value") else dims[d.dim_param])
        feeds.append({"name": v.name, "elem_type": DTYPE_NAME[tt.elem_type], "shape": shape})
    return feeds


def tensor_record(t, base_dir):
    rec = {"name": t.name, "dims": list(t.dims), "data_type": t.data_type,
           "data_type_name": DTYPE_NAME[t.data_type], "storage": storage_of(t)}
    if rec["storage"] == "external":
        info = {e.key: e.value for e in t.external_data}
        rec["external"] = {"location": info["location"], "offset": int(info.get("offset", 0)),
                           "length": int(info["length"])}
        inline = TensorProto()
        inline.CopyFrom(t)
        external_data_helper.load_external_data_for_tensor(inline, base_dir)
        inline.data_location = TensorProto.DEFAULT
        del inline.external_data[:]
        values = decode(inline)
    else:
        values = decode(t)
    if t.data_type != BFLOAT16 and rec["storage"] != "external":
        # Cross-check the decoder above against onnx's own.
        ref = numpy_helper.to_array(t).astype(np.float64).reshape(-1)
        assert np.array_equal(ref, values), t.name
    rec.update(stats(values))
    return rec


def stats(values):
    """Exactly rounded float64 sums (math.fsum), so any summation order lands within an ulp."""
    return {"sum": math.fsum(values.tolist()), "sum_sq": math.fsum((values * values).tolist()),
            "first3": [float(v) for v in values[:3]]}


def sparse_record(s):
    dense = np.zeros(int(np.prod(s.dims)))
    idx = np.frombuffer(s.indices.raw_data, "<i8")
    dense[idx] = decode(s.values)
    return {"name": s.values.name, "dims": list(s.dims), "data_type": s.values.data_type,
            "data_type_name": DTYPE_NAME[s.values.data_type], "storage": "sparse_initializer",
            "nnz": int(idx.size), **stats(dense)}


def weight_tensors(model, base_dir):
    """Records for the float tensors that conv-family nodes of the main graph read as weight."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    sparse = {s.values.name: s for s in g.sparse_initializer}
    consts = {n.name: n for n in g.node if n.op_type == "Constant"}
    seen, recs = set(), []
    for n in g.node:
        if n.op_type not in CONV_OPS:
            continue
        w = n.input[WEIGHT_INPUT[n.op_type]]
        kind, name = resolve_weight(g, w)
        if kind is None and w in sparse and w not in seen:
            seen.add(w)
            recs.append(sparse_record(sparse[w]))
            continue
        if kind is None:
            continue
        t = inits[name] if kind == "initializer" else attr(consts[name], "value")
        if name in seen or t.data_type not in FLOAT_TYPES:
            continue
        seen.add(name)
        rec = tensor_record(t, base_dir)
        if kind == "constant":
            rec["constant_node"] = name
        recs.append(rec)
    return recs


def build_nodes(fx, model):
    facts, D = scan_main(model)
    ann = fx["nodes"]
    used = set()
    rows = []
    for scope, idx, n, graph in all_conv_nodes(model):
        key = n.name if n.name else "#%d" % idx
        assert key in ann, "%s: conv node %s has no expectation" % (fx["file"], key)
        used.add(key)
        a = ann[key]
        row = {"node": n.name, "node_index": idx, "scope": scope, "op_type": n.op_type,
               "action": a["action"], "tensor": a.get("tensor"),
               "tensor_kind": a.get("tensor_kind"),
               "weight_input": n.input[WEIGHT_INPUT[n.op_type]],
               "i": None, "D": None, "d": None, "stage": None,
               "channels": a.get("channels"), "multiplier": a.get("multiplier"),
               "kernel": a.get("kernel"), "keywords": a.get("keywords"),
               "warn": a.get("warn"), "no_warning": a.get("no_warning", False),
               "note": a.get("note")}
        if scope == "main":
            f = facts[idx]
            if fx.get("outcome") == "refuse":
                assert f["contradiction"] == (a["action"] == "REFUSE"), key
            elif a["action"] in ("REWRITE", "SKIP"):
                assert f["depthwise"], "%s: %s is not depthwise" % (fx["file"], key)
            else:
                assert not f["depthwise"], "%s: %s is depthwise but KEEP" % (fx["file"], key)
            if f["depthwise"] and fx.get("outcome") != "refuse":
                for k in ("i", "D", "d", "stage", "channels", "multiplier", "kernel"):
                    row[k] = f[k]
            if a["action"] == "REWRITE":
                kind, name = resolve_weight(model.graph, row["weight_input"])
                assert (kind, name) == (a["tensor_kind"], a["tensor"]), (key, kind, name)
        elif graph is not None and row["kernel"] is None:
            inner = {t.name: t for t in graph.initializer}
            ws = list(inner[row["weight_input"]].dims)
            g_ = attr(n, "group", 1)
            row["channels"], row["multiplier"], row["kernel"] = g_, ws[0] // g_, ws[2:]
        rows.append(row)
    assert used == set(ann), "%s: unused expectations %s" % (fx["file"], set(ann) - used)

    exp = fx.get("expect", {})
    if "D" in exp and fx.get("outcome") != "refuse":
        assert exp["D"] == D, (fx["file"], exp["D"], D)
    by_key = {(r["node"] or "#%d" % r["node_index"]): r for r in rows if r["scope"] == "main"}
    for field in ("i", "stage"):
        for key, want in exp.get(field, {}).items():
            assert by_key[key][field] == want, (fx["file"], key, field, by_key[key][field], want)
    return rows, (None if fx.get("outcome") == "refuse" else D)


def write_fixture(fx):
    model = fx["model"]
    if fx.get("infer", True):
        model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    path = os.path.join(OUT, fx["file"])
    base_dir = os.path.dirname(path)
    os.makedirs(base_dir, exist_ok=True)
    onnx.save(model, path)
    saved = onnx.load(path, load_external_data=False)
    rows, D = build_nodes(fx, saved)
    data_files = sorted({e.value for t in saved.graph.initializer for e in t.external_data
                         if e.key == "location"})
    outcome = fx.get("outcome", "rewrite")
    default_note = {"rewrite": "expected to run on ONNX Runtime CPU; the rewritten model "
                               "must run too",
                    "unchanged": "expected to run on ONNX Runtime CPU"}.get(outcome, "")
    ort_runs, ort_note = fx.get("ort", (True, default_note))
    rec = {
        "file": fx["file"],
        "title": fx["title"],
        "situation": fx["situation"],
        "ir_version": saved.ir_version,
        "opset_import": [{"domain": o.domain, "version": o.version} for o in saved.opset_import],
        "size": os.path.getsize(path),
        "sha256": sha256(path),
        "data_files": [{"file": os.path.join(os.path.dirname(fx["file"]), f),
                        "size": os.path.getsize(os.path.join(base_dir, f)),
                        "sha256": sha256(os.path.join(base_dir, f))} for f in data_files],
        "checker": run_checker(path),
        "ort": {"runs": ort_runs, "note": ort_note},
        "feeds": feeds_of(saved, fx.get("feeds", {})),
        "outcome": outcome,
        "output": outcome != "refuse",
        "exit": 1 if outcome == "refuse" else 0,
        "refuse_keywords": fx.get("refuse_keywords"),
        "message_keywords": fx.get("message_keywords"),
        "D": D,
        "nodes": rows,
        "tensors": weight_tensors(saved, base_dir),
        "notes": fx.get("notes"),
    }
    return rec


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.6g" % v
    if isinstance(v, list):
        return "[" + ",".join(fmt(x) for x in v) + "]"
    return str(v)


def cell(text):
    """Escape the pipes of keyword alternatives inside a Markdown table cell."""
    return text.replace("|", "\\|")


def readme(records):
    L = ["# Generated fixture models", "",
         "Made by `testdata/gen/gen.py` (`make fixtures`) with python3-onnx %s and numpy %s, "
         "fixed seeds; do not edit by hand, change the generator and run it again. "
         "`expect.json` holds the same content for the Go tests." % (onnx.__version__,
                                                                   np.__version__), "",
         "## Conventions", ""]
    for k, v in CONVENTIONS.items():
        L.append("* **%s**: %s" % (k, v))
    L += ["", "## Summary", "", "| file | title | D | outcome | checker | ORT |",
          "|---|---|---|---|---|---|"]
    for r in records:
        L.append("| `%s` | %s | %s | %s | %s | %s |" % (
            r["file"], r["title"], fmt(r["D"]), r["outcome"],
            "passes" if r["checker"]["passes"] else "fails", "runs" if r["ort"]["runs"] else
            "does not run"))
    for r in records:
        L += ["", "## `%s`" % r["file"], "", "**%s.** %s" % (r["title"], r["situation"]), ""]
        L.append("- IR %d, opsets %s; %d bytes" % (
            r["ir_version"], ", ".join("%s %d" % (o["domain"] or "ai.onnx", o["version"])
                                       for o in r["opset_import"]), r["size"]))
        chk = r["checker"]
        L.append("- onnx.checker (full_check): " + ("passes" if chk["passes"] else
                                                    "fails: " + chk["error"]))
        L.append("- ONNX Runtime: %s; %s" % ("runs" if r["ort"]["runs"] else "does not run",
                                             r["ort"]["note"]))
        L.append("- feeds: " + ", ".join("%s %s %s" % (f["name"], f["elem_type"],
                                                       fmt(f["shape"])) for f in r["feeds"]))
        out = {"rewrite": "output written; REWRITE tensors change, nothing else",
               "unchanged": "output written, equal to the input; message contains %s"
                            % " and ".join("`%s`" % k for k in r["message_keywords"] or []),
               "refuse": "exit 1, error contains %s; no output file"
                         % " and ".join("`%s`" % k for k in r["refuse_keywords"] or [])}
        L.append("- outcome: %s (D = %s)" % (out[r["outcome"]], fmt(r["D"])))
        for d in r["data_files"]:
            L.append("- data file `%s`: %d bytes, sha256 `%s`" % (d["file"], d["size"],
                                                                 d["sha256"]))
        L += ["", "| # | node | scope | op | action | tensor | i | d | stage | C | m | kernel "
              "| keywords / note |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n in r["nodes"]:
            extra = []
            if n["keywords"]:
                extra.append("message: " + " and ".join("`%s`" % k for k in n["keywords"]))
            if n["warn"]:
                extra.append("warning: " + " and ".join("`%s`" % k for k in n["warn"]))
            if n["no_warning"]:
                extra.append("no warning")
            if n["note"]:
                extra.append(n["note"])
            tensor = n["tensor"] or "-"
            if n["tensor_kind"] == "constant":
                tensor += " (Constant node)"
            L.append("| %d | `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n["node_index"], n["node"], n["scope"], n["op_type"], n["action"], tensor,
                fmt(n["i"]), fmt(n["d"]), fmt(n["stage"]), fmt(n["channels"]),
                fmt(n["multiplier"]), fmt(n["kernel"]), cell("; ".join(extra) or "-")))
        if r["tensors"]:
            L += ["", "| tensor | dims | type | storage | sum | sum of squares | first 3 |",
                  "|---|---|---|---|---|---|---|"]
            for t in r["tensors"]:
                st = t["storage"]
                if st == "external":
                    e = t["external"]
                    st = "external `%s` @%d +%d" % (e["location"], e["offset"], e["length"])
                L.append("| `%s` | %s | %s | %s | %.9g | %.9g | %s |" % (
                    t["name"], fmt(t["dims"]), t["data_type_name"], st, t["sum"], t["sum_sq"],
                    ", ".join("%.9g" % v for v in t["first3"])))
        if r["notes"]:
            L += ["", "**Notes.** " + r["notes"]]
    return "\n".join(L) + "\n"


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    records = [write_fixture(fn()) for fn in FIXTURES]
    doc = {"schema": 1, "generator": "testdata/gen/gen.py", "onnx": onnx.__version__,
           "numpy": np.__version__, "conventions": CONVENTIONS, "models": records}
    with open(os.path.join(OUT, "expect.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme(records))
    nfiles = sum(len(fs) for _, _, fs in os.walk(OUT))
    print("fixtures: %d models, %d files in %s" % (len(records), nfiles,
                                                    os.path.relpath(OUT, os.getcwd())))


if __name__ == "__main__":
    sys.exit(main())
