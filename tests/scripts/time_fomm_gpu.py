"""Times the official FOMM implementation at its vox-256 configuration on a CUDA GPU, as
`prioritycut bench animate` times ours: batch 1, random weights, eval mode, no_grad.

Usage: python3 time_fomm_gpu.py FOMM_SOURCE_DIR [RUNS] [WARMUP]

FOMM_SOURCE_DIR is the official code (github.com/AliaksandrSiarohin/first-order-model): its
`modules/`, `sync_batchnorm/` and `config/vox-256.yaml` are all this needs. Prints the median ms of
one animation frame as the official `make_animation` computes it (keypoints of the driving frame,
then the generator, dense motion and the source's encoding included), of the keypoint detector
alone and of the generator alone, each with the GPU synchronised, and what PyTorch was allowed to
use (TF32 on tensor cores is PyTorch's default for cuDNN convolutions).
"""
import statistics
import sys
import time

import torch
import yaml

sys.path.insert(0, sys.argv[1])
from modules.keypoint_detector import KPDetector  # noqa: E402
from modules.generator import OcclusionAwareGenerator  # noqa: E402

runs = int(sys.argv[2]) if len(sys.argv) > 2 else 50
warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 10
if not torch.cuda.is_available():
    sys.exit("time_fomm_gpu.py: PyTorch sees no CUDA device")
device = torch.device("cuda")
torch.manual_seed(0)
with open(sys.argv[1] + "/config/vox-256.yaml") as f:
    mp = yaml.safe_load(f)["model_params"]
kp = KPDetector(**mp["kp_detector_params"], **mp["common_params"]).eval().to(device)
gen = OcclusionAwareGenerator(**mp["generator_params"], **mp["common_params"]).eval().to(device)
source = torch.rand(1, 3, 256, 256, device=device)
driving = torch.rand(1, 3, 256, 256, device=device)


def median_ms(fn):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


with torch.no_grad():
    kp_source = kp(source)
    kp_driving = kp(driving)
    print("device: %s | torch %s | cuDNN TF32 %s | matmul TF32 %s | cudnn.benchmark %s" % (
        torch.cuda.get_device_name(0), torch.__version__, torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark))
    kp_ms = median_ms(lambda: kp(driving))
    gen_ms = median_ms(lambda: gen(source, kp_driving=kp_driving, kp_source=kp_source))
    frame_ms = median_ms(lambda: gen(source, kp_driving=kp(driving), kp_source=kp_source)["prediction"].cpu())
    print("kp_detector ms: %.2f" % kp_ms)
    print("generator ms: %.2f" % gen_ms)
    print("official animation frame ms: %.2f (%.1f frames/s, read back to the CPU)" % (frame_ms, 1000 / frame_ms))
