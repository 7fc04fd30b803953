"""Times the official Thin-Plate Spline Motion Model on the CPU at its vox-256 configuration, as
`prioritycut bench animate --config TPSMM/config/vox-256.yaml` times ours.

Usage: python3 time_tpsmm.py TPSMM_SOURCE_DIR [THREADS]
Prints median milliseconds (10 runs after one warm-up) of: the keypoints of one 256x256 frame,
the generation (dense motion + inpainting) for one frame, and one animation frame as the official
`make_animation` computes it (the driving frame's keypoints, dense motion, inpainting with the
source encoded again), batch 1, random weights, eval mode, no_grad.
"""
import statistics
import sys
import time

import torch
import yaml

sys.path.insert(0, sys.argv[1])
from modules.dense_motion import DenseMotionNetwork  # noqa: E402
from modules.inpainting_network import InpaintingNetwork  # noqa: E402
from modules.keypoint_detector import KPDetector  # noqa: E402

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
torch.manual_seed(0)
with open(sys.argv[1] + "/config/vox-256.yaml") as f:
    mp = yaml.safe_load(f)["model_params"]
kp = KPDetector(**mp["common_params"]).eval()
dense = DenseMotionNetwork(**mp["common_params"], **mp["dense_motion_params"]).eval()
inpainting = InpaintingNetwork(**mp["generator_params"], **mp["common_params"]).eval()
print("params: kp_detector %d, dense_motion %d, inpainting %d" % tuple(
    sum(p.numel() for p in m.parameters()) for m in (kp, dense, inpainting)))
source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)


def median_ms(fn, runs=10):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def generate(kp_driving):
    motion = dense(source_image=source, kp_driving=kp_driving, kp_source=kp_source, bg_param=None, dropout_flag=False)
    return inpainting(source, motion)["prediction"]


with torch.no_grad():
    kp_source = kp(source)
    kp_driving = kp(driving)
    print("torch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    print("kp_detector ms: %.1f" % median_ms(lambda: kp(driving)))
    print("generation ms: %.1f" % median_ms(lambda: generate(kp_driving)))
    print("animation frame ms: %.1f" % median_ms(lambda: generate(kp(driving))))
