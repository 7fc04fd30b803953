"""Times the official FOMM vox-256 animation frame on the CPU in PyTorch, ONNX Runtime and OpenVINO,
as peers of `prioritycut bench animate` (and of time_fomm.py's "animation frame ms").

Usage: python3 time_fomm_onnx.py FOMM_SOURCE_DIR [--threads 2] [--runs 10] [--warmup 3]
           [--engines ort,openvino-f32,openvino-default,torch] [--onnx-dir DIR]

FOMM_SOURCE_DIR is the official code (github.com/AliaksandrSiarohin/first-order-model): its
`modules/`, `sync_batchnorm/` and `config/vox-256.yaml` are all this needs.

What is measured: one animation frame at 256x256, batch 1, random weights (torch.manual_seed(0)),
eval mode, as time_fomm.py builds it: the keypoint detector on the driving frame, then the
OcclusionAwareGenerator (dense motion, the source's encoding and the decoder) with the source's
keypoints computed once outside the timing. The peers therefore encode the source again every frame:
the exported graph holds the whole generator.

How: the frame is exported as ONE ONNX graph (opset 17, as grid_sample needs >= 16) with inputs
`source` [1,3,256,256], `driving` [1,3,256,256], `kp_source_value` [1,10,2] and
`kp_source_jacobian` [1,10,2,2] and output `prediction` [1,3,256,256]. torch.inverse (of the
driving Jacobians, in modules/dense_motion.py) does not export, so during the export only it is
replaced there by the closed-form 2x2 inverse, checked against torch.inverse first. Each engine
then runs in a fresh process of its own (this script started again with --worker), so no engine's
threads or memory affect another's: `--warmup` untimed runs, then `--runs` timed ones, median and
min ms, and the largest absolute difference of its output from PyTorch's on the same inputs.
  torch             PyTorch eager, the official code unchanged, torch.set_num_threads, no_grad
  ort               ONNX Runtime, CPUExecutionProvider, intra-op threads, 1 inter-op, all graph
                    optimisations
  openvino-f32      OpenVINO CPU, INFERENCE_PRECISION_HINT f32, latency hint, the threads
  openvino-default  OpenVINO CPU at the precision it picks itself (bf16 on CPUs with AVX512-BF16
                    or AMX), latency hint, the threads
The graph, the inputs and each engine's output are written to --onnx-dir (a temporary folder,
removed at the end, when not given).

Needs (pip): torch (>= 2.5, for torch.onnx.export's dynamo flag), onnx, onnxruntime, openvino,
pyyaml, numpy. FOMM's modules/keypoint_detector.py and modules/generator.py import only torch (and
its sync_batchnorm/ folder); the rest of FOMM (training, the demo) needs more and is not used.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ENGINES = ("ort", "openvino-f32", "openvino-default", "torch")
INPUTS = ("source", "driving", "kp_source_value", "kp_source_jacobian")
RESULT_TAG = "RESULT "


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fomm_source_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--onnx-dir")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        parser.error("unknown engine(s) %s; choose from %s" % (",".join(unknown), ",".join(ENGINES)))
    return args


# ---------------------------------------------------------------------------------------------
# The official model, built as time_fomm.py builds it.

def build_frame(fomm_dir):
    """The keypoint detector and generator of vox-256 with seed-0 random weights, in eval mode,
    wrapped as one module computing one animation frame from plain tensors."""
    import torch
    import yaml

    sys.path.insert(0, fomm_dir)
    from modules.keypoint_detector import KPDetector
    from modules.generator import OcclusionAwareGenerator

    torch.manual_seed(0)
    with open(os.path.join(fomm_dir, "config", "vox-256.yaml")) as f:
        mp = yaml.safe_load(f)["model_params"]
    kp = KPDetector(**mp["kp_detector_params"], **mp["common_params"]).eval()
    gen = OcclusionAwareGenerator(**mp["generator_params"], **mp["common_params"]).eval()

    class AnimationFrame(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.kp, self.gen = kp, gen

        def forward(self, source, driving, kp_source_value, kp_source_jacobian):
            kp_source = {"value": kp_source_value, "jacobian": kp_source_jacobian}
            return self.gen(source, kp_driving=self.kp(driving), kp_source=kp_source)["prediction"]

    return AnimationFrame().eval()


def inverse_2x2(m):
    """Closed-form inverse of [..., 2, 2] matrices, [[d, -b], [-c, a]] / (ad - bc): exportable,
    unlike torch.inverse."""
    import torch

    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    rows = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return rows / (a * d - b * c)[..., None, None]


class _TorchWithInverse2x2:
    """Stands in for the `torch` module inside modules/dense_motion.py during the export, so that
    only FOMM's own call of torch.inverse changes, not torch's."""

    def __init__(self, torch):
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)

    @staticmethod
    def inverse(m):
        return inverse_2x2(m)


def export(args, onnx_path):
    """Computes PyTorch's reference frame, exports the ONNX graph, and saves both, with the inputs,
    next to the graph. Returns the reference prediction."""
    import torch
    import onnx

    torch.set_num_threads(args.threads)
    frame = build_frame(args.fomm_source_dir)
    print("params: kp_detector %d, generator %d" % (
        sum(p.numel() for p in frame.kp.parameters()), sum(p.numel() for p in frame.gen.parameters())))
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        kp_source = frame.kp(source)
        inputs = (source, driving, kp_source["value"], kp_source["jacobian"])
        reference = frame(*inputs).numpy()

        # Random Jacobians with weights of seed 0 are exactly the identity (FOMM initialises the
        # Jacobian head so), so check the closed form on general matrices too.
        matrices = torch.cat([frame.kp(driving)["jacobian"].reshape(-1, 2, 2),
                              torch.eye(2) + 0.5 * torch.randn(4096, 2, 2)])
        expected, closed = torch.inverse(matrices), inverse_2x2(matrices)
        print("closed-form 2x2 inverse vs torch.inverse: max abs diff %.3g, max rel diff %.3g" % (
            (closed - expected).abs().max(), ((closed - expected).abs() / expected.abs().clamp(min=1e-3)).max()))
        if not torch.allclose(closed, expected, rtol=1e-4, atol=1e-5):
            sys.exit("time_fomm_onnx.py: the closed-form 2x2 inverse does not match torch.inverse")

        import modules.dense_motion as dense_motion
        dense_motion.torch = _TorchWithInverse2x2(torch)
        try:
            # The TorchScript exporter: the dynamo one needs onnxscript and adds nothing here.
            torch.onnx.export(frame, inputs, onnx_path, input_names=list(INPUTS),
                              output_names=["prediction"], opset_version=17, dynamo=False)
        finally:
            dense_motion.torch = torch

    onnx.checker.check_model(onnx_path)
    print("exported %s: %.1f MB, opset 17, %d nodes" % (
        onnx_path, os.path.getsize(onnx_path) / 1e6, len(onnx.load(onnx_path).graph.node)))
    folder = os.path.dirname(onnx_path)
    for name, tensor in zip(INPUTS, inputs):
        np.save(os.path.join(folder, name + ".npy"), tensor.numpy())
    np.save(os.path.join(folder, "prediction_reference.npy"), reference)
    return reference


# ---------------------------------------------------------------------------------------------
# One engine, in its own process.

def time_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return times


def engine_runner(args, onnx_path, feeds):
    """Returns a function computing one frame's prediction as a numpy array, for args.worker."""
    engine, threads = args.worker, args.threads
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        frame = build_frame(args.fomm_source_dir)
        tensors = [torch.from_numpy(feeds[name]) for name in INPUTS]
        print("torch: %d threads" % torch.get_num_threads())
        return lambda: frame(*tensors).numpy()

    if engine == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        print("ort: providers %s, %d intra-op threads" % (session.get_providers(), threads))
        return lambda: session.run(["prediction"], feeds)[0]

    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if engine == "openvino-f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(onnx_path, "CPU", config)
    print("%s: INFERENCE_PRECISION_HINT %s, INFERENCE_NUM_THREADS %s, PERFORMANCE_HINT %s" % (
        engine, compiled.get_property("INFERENCE_PRECISION_HINT"),
        compiled.get_property("INFERENCE_NUM_THREADS"), compiled.get_property("PERFORMANCE_HINT")))
    request = compiled.create_infer_request()

    def run():
        request.infer(feeds)
        return request.get_output_tensor(0).data.copy()

    return run


def worker(args, folder):
    """Times args.worker on the saved graph and inputs; prints its lines, then one RESULT line."""
    onnx_path = os.path.join(folder, "fomm_frame.onnx")
    feeds = {name: np.load(os.path.join(folder, name + ".npy")) for name in INPUTS}
    run = engine_runner(args, onnx_path, feeds)
    times = time_ms(run, args.runs, args.warmup)
    output = run()
    np.save(os.path.join(folder, "prediction_%s.npy" % args.worker), output)
    diff = float(np.abs(output - np.load(os.path.join(folder, "prediction_reference.npy"))).max())
    result = {"engine": args.worker, "median_ms": statistics.median(times), "min_ms": min(times),
              "diff_vs_torch": diff}
    print("%s: median %.1f ms, min %.1f ms over %d runs (%d warm-up); max abs diff vs torch %.3g" % (
        args.worker, result["median_ms"], result["min_ms"], args.runs, args.warmup, diff))
    print(RESULT_TAG + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver.

def run_engine(args, folder, engine):
    """Runs one engine in a fresh process; returns its result, or None when it failed."""
    command = [sys.executable, os.path.abspath(__file__), args.fomm_source_dir, "--worker", engine,
               "--onnx-dir", folder, "--threads", str(args.threads), "--runs", str(args.runs),
               "--warmup", str(args.warmup)]
    print("\n== %s" % engine, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    result = None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
        else:
            print(line)
    if done.returncode != 0 or result is None:
        print("%s: failed (exit status %d)" % (engine, done.returncode))
        return None
    return result


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def quiet_known_warnings():
    """Hides the warnings that FOMM's 2019 code and the export always raise and that change
    nothing here, so that the timings stay readable."""
    for message in (
            r"torch\.meshgrid: in an upcoming release",  # FOMM's meshgrid, 'ij' as it means
            r"Default grid_sample and affine_grid behavior",  # FOMM's align_corners=False default
            r"You are using the legacy TorchScript-based ONNX export",  # chosen on purpose
            r"Constant folding - Only steps=1",  # the anti-alias filter's ::4 slices stay Slice ops
            r"Converting a tensor to a Python",  # tracer: FOMM's shape checks, fixed at 256x256
            r"Iterating over a tensor"):
        warnings.filterwarnings("ignore", message=message)


def main():
    args = parse_args()
    quiet_known_warnings()
    if args.worker:
        return worker(args, args.onnx_dir)

    print("cpu: %s (%d logical CPUs seen)" % (cpu_model(), os.cpu_count()))
    print("python %s; %s" % (platform.python_version(), ", ".join(
        "%s %s" % (p, version(p)) for p in ("torch", "onnx", "onnxruntime", "openvino", "numpy"))))
    print("threads %d, %d warm-up + %d timed runs per engine" % (args.threads, args.warmup, args.runs))
    folder = os.path.abspath(args.onnx_dir) if args.onnx_dir else tempfile.mkdtemp(prefix="fomm_onnx_")
    os.makedirs(folder, exist_ok=True)
    try:
        export(args, os.path.join(folder, "fomm_frame.onnx"))
        results = {engine: run_engine(args, folder, engine) for engine in args.engines}

        if results.get("openvino-default") and results.get("openvino-f32"):
            default, f32 = (np.load(os.path.join(folder, "prediction_openvino-%s.npy" % p))
                            for p in ("default", "f32"))
            print("\nopenvino-default vs openvino-f32: max abs diff %.3g" % np.abs(default - f32).max())

        print("\n%-18s %10s %10s %10s %22s" % ("engine", "median ms", "min ms", "frames/s",
                                               "max abs diff vs torch"))
        for engine, r in results.items():
            if r is None:
                print("%-18s %10s" % (engine, "failed"))
            else:
                print("%-18s %10.1f %10.1f %10.2f %22.3g" % (
                    engine, r["median_ms"], r["min_ms"], 1000 / r["median_ms"], r["diff_vs_torch"]))
    finally:
        if not args.onnx_dir:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if None in results.values() else 0


if __name__ == "__main__":
    sys.exit(main())
