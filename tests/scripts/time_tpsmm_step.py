"""Times one training step of the official Thin-Plate Spline Motion Model, the counterpart of
`prioritycut bench train --config TPSMM/config/vox-256.yaml --variant fomm --batch 1` (vox-256,
256x256, batch 1, epoch 35).

Usage: python time_tpsmm_step.py TPSMM_SOURCE_DIR [THREADS] [RUNS]

TPSMM_SOURCE_DIR is a checkout of yoyo-nb/Thin-Plate-Spline-Motion-Model; its modules are imported,
nothing of it is copied. The step is what its `train.py` does per batch with `vox-256.yaml` at
epoch 35 (the first of its steady state: the background predictor on since `bg_start` 10, the
transformation dropout over at `dropout_epoch` 35): `GeneratorFullModel` forward (keypoints,
background motion, dense motion, inpainting, VGG19 perceptual pyramid, equivariance, warp and
background losses), backward, the gradient clipping and both Adam steps. VGG19 has
torchvision's architecture with random weights (the ImageNet ones cannot be downloaded here; the
arithmetic is the same). Prints every step's milliseconds and the median after the first.
"""
import math
import sys
import time

import torch
import torchvision.models as tvm
import yaml
from torch.nn.utils import clip_grad_norm_

sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 4
_vgg19 = tvm.vgg19
tvm.vgg19 = lambda pretrained=False, **kwargs: _vgg19(weights=None)

from modules.bg_motion_predictor import BGMotionPredictor  # noqa: E402
from modules.dense_motion import DenseMotionNetwork  # noqa: E402
from modules.inpainting_network import InpaintingNetwork  # noqa: E402
from modules.keypoint_detector import KPDetector  # noqa: E402
from modules.model import GeneratorFullModel  # noqa: E402

with open(sys.argv[1] + "/config/vox-256.yaml") as f:
    config = yaml.safe_load(f)
params = config["model_params"]
inpainting = InpaintingNetwork(**params["generator_params"], **params["common_params"])
kp_detector = KPDetector(**params["common_params"])
dense_motion = DenseMotionNetwork(**params["common_params"], **params["dense_motion_params"])
bg_predictor = BGMotionPredictor()
train = config["train_params"]
train["scales"] = [float(s) for s in train["scales"]]
full = GeneratorFullModel(kp_detector, bg_predictor, dense_motion, inpainting, train)
for net in (inpainting, kp_detector, dense_motion, bg_predictor):
    net.train()
optimizer = torch.optim.Adam(list(inpainting.parameters()) + list(dense_motion.parameters())
                             + list(kp_detector.parameters()), lr=train["lr_generator"], betas=(0.5, 0.999),
                             weight_decay=1e-4)
optimizer_bg = torch.optim.Adam(bg_predictor.parameters(), lr=train["lr_generator"], betas=(0.5, 0.999),
                                weight_decay=1e-4)
batch = {"source": torch.rand(1, 3, 256, 256), "driving": torch.rand(1, 3, 256, 256)}
epoch = max(train["bg_start"], train["dropout_epoch"])


def step():
    losses, _ = full(batch, epoch)
    sum(value.mean() for value in losses.values()).backward()
    clip_grad_norm_(kp_detector.parameters(), max_norm=10, norm_type=math.inf)
    clip_grad_norm_(dense_motion.parameters(), max_norm=10, norm_type=math.inf)
    clip_grad_norm_(bg_predictor.parameters(), max_norm=10, norm_type=math.inf)
    optimizer.step()
    optimizer.zero_grad()
    optimizer_bg.step()
    optimizer_bg.zero_grad()


times = []
for _ in range(runs):
    start = time.perf_counter()
    step()
    times.append((time.perf_counter() - start) * 1000)
timed = sorted(times[1:])
print(f"official TPSMM train step (epoch {epoch}, batch 1, 256x256) ms:", " ".join(f"{t:.0f}" for t in times),
      "| median after the first:", f"{timed[len(timed) // 2]:.0f}")
