"""The encoder as an onnxruntime session, built from the checkpoint's arrays at load time.

ONNX has a native LSTM operator, so the three layers are three `LSTM` nodes, followed by the
linear layer, ReLU and L2 normalisation. onnxruntime runs it 2-15x faster than the numpy
recurrence on two cores (docs/diarization.md); the numpy forward stays as the reference the
graph is tested against.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from worker.diarize.types import FloatArray

OPSET = 17


def _iofc(rows: FloatArray) -> FloatArray:
    """torch orders an LSTM's gate rows i, f, g, o; ONNX wants i, o, f, c."""
    i, f, g, o = np.split(rows, 4)
    return np.concatenate([i, o, f, g]).astype(np.float32)


def encoder_model(params: dict[str, FloatArray], layers: int, frames: int) -> bytes:
    """The serialised ONNX model: input `mels` (batch, frames, 40), output `emb` (batch, 256)."""
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("Transpose", ["mels"], ["x0"], perm=[1, 0, 2])]
    hidden = params["lstm.weight_hh_l0"].shape[1]
    for n in range(layers):
        w = _iofc(params[f"lstm.weight_ih_l{n}"])[None]
        r = _iofc(params[f"lstm.weight_hh_l{n}"])[None]
        b = np.concatenate(
            [_iofc(params[f"lstm.bias_ih_l{n}"]), _iofc(params[f"lstm.bias_hh_l{n}"])]
        )[None]
        inits += [
            numpy_helper.from_array(w, f"W{n}"),
            numpy_helper.from_array(r, f"R{n}"),
            numpy_helper.from_array(b, f"B{n}"),
        ]
        nodes.append(
            helper.make_node(
                "LSTM", [f"x{n}", f"W{n}", f"R{n}", f"B{n}"], [f"y{n}", f"h{n}"], hidden_size=hidden
            )
        )
        nodes.append(helper.make_node("Squeeze", [f"y{n}", "axis1"], [f"x{n + 1}"]))
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.ascontiguousarray(params["linear.weight"].T, np.float32), "LW"),
        numpy_helper.from_array(params["linear.bias"].astype(np.float32), "LB"),
    ]
    nodes += [
        helper.make_node("Squeeze", [f"h{layers - 1}", "axis0"], ["last"]),
        helper.make_node("MatMul", ["last", "LW"], ["lin"]),
        helper.make_node("Add", ["lin", "LB"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["pos"]),
        helper.make_node("LpNormalization", ["pos"], ["emb"], axis=1, p=2),
    ]
    mels = helper.make_tensor_value_info("mels", TensorProto.FLOAT, ["batch", frames, 40])
    emb = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 256])
    graph = helper.make_graph(nodes, "voice_encoder", [mels], [emb], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def encoder_session(
    params: dict[str, FloatArray], layers: int, frames: int, threads: int
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        encoder_model(params, layers, frames), options, providers=["CPUExecutionProvider"]
    )
