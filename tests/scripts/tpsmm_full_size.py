"""The full-size TPSMM check: a vox-256 model with seeded weights, saved by the official code in
its checkpoint layout, animates a real photo by a real clip with the official `make_animation` in
each of the demo's modes; the engine must give the same frames to 8-bit rounding.

Usage: python3 tpsmm_full_size.py TPSMM_SOURCE_DIR PHOTO CLIP OUT_DIR [FRAMES]

TPSMM_SOURCE_DIR is the official code (github.com/yoyo-nb/Thin-Plate-Spline-Motion-Model): its
`modules/`, `demo.py` and `config/vox-256.yaml`. Writes to OUT_DIR:
- `checkpoint.pth.tar` and `config.yaml`: the official vox-256 networks, torch's default
  initialisation from seed 0, every norm's parameters and statistics made non-trivial, the AVD
  network included (the released files carry one) with its output spread, in
  `Logger.save_cpk`'s layout;
- `source.png` and `driving/NNNN.png`: the photo and the first FRAMES (default 30) frames of the
  clip resized to 256×256 as `demo.py` resizes them (skimage), stored as 8-bit PNGs; the official
  code reads these PNGs back, so that both sides see the same pixels;
- `official-{standard,relative,avd}/NNNN.png`: `make_animation`'s frames, `img_as_ubyte` as the
  demo saves them.
Then, for each mode, `prioritycut animate --checkpoint OUT/checkpoint.pth.tar --config
OUT/config.yaml --source OUT/source.png --driving OUT/driving --face off --out OUT/ours-MODE`
(`--absolute` for standard, `--avd` for avd) and compare the PNG folders (`compare` below:
`python3 tpsmm_full_size.py compare OUT_DIR`).
"""
import os
import sys

import imageio
import numpy as np
import torch
import yaml
from skimage import img_as_ubyte
from skimage.transform import resize

MODES = ("standard", "relative", "avd")


def compare(out):
    for mode in MODES:
        official = sorted(os.listdir(os.path.join(out, "official-" + mode)))
        ours_dir = os.path.join(out, "ours-" + mode)
        ours = sorted(os.listdir(ours_dir))
        assert len(ours) == len(official), (mode, len(ours), len(official))
        worst, off = 0, 0
        for a, b in zip(official, ours):
            x = imageio.imread(os.path.join(out, "official-" + mode, a)).astype(int)
            y = imageio.imread(os.path.join(ours_dir, b))[..., :3].astype(int)
            diff = np.abs(x - y)
            worst = max(worst, int(diff.max()))
            off += int((diff > 1).sum())
        print("%-8s %d frames: max |ours - official| = %d/255, values off by more than 1: %d"
              % (mode, len(ours), worst, off))


def make(tpsmm_dir, photo, clip, out, frames):
    sys.path.insert(0, tpsmm_dir)
    from demo import load_checkpoints, make_animation  # noqa: E402
    from modules.avd_network import AVDNetwork  # noqa: E402
    from modules.bg_motion_predictor import BGMotionPredictor  # noqa: E402
    from modules.dense_motion import DenseMotionNetwork  # noqa: E402
    from modules.inpainting_network import InpaintingNetwork  # noqa: E402
    from modules.keypoint_detector import KPDetector  # noqa: E402

    torch.manual_seed(0)
    torch.set_num_threads(2)
    config_path = os.path.join(tpsmm_dir, "config", "vox-256.yaml")
    with open(config_path) as f:
        config = yaml.full_load(f)
    mp = config["model_params"]
    models = {
        "inpainting_network": InpaintingNetwork(**mp["generator_params"], **mp["common_params"]),
        "kp_detector": KPDetector(**mp["common_params"]),
        "bg_predictor": BGMotionPredictor(),
        "dense_motion_network": DenseMotionNetwork(**mp["common_params"], **mp["dense_motion_params"]),
        "avd_network": AVDNetwork(num_tps=mp["common_params"]["num_tps"], **mp["avd_network_params"]),
    }
    with torch.no_grad():
        for model in models.values():
            for m in model.modules():
                if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.InstanceNorm2d)):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        models["kp_detector"].fg_encoder.fc.weight.mul_(4.0)
        models["inpainting_network"].final.weight.mul_(5.0)
        # A trained AVD network spreads its keypoints as the detector does; at torch's default
        # initialisation they sit in a tight cluster, where the TPS systems are so ill-conditioned
        # that float32 rounding of the keypoints (~6e-8) moves the official frames by 1.8/255.
        models["avd_network"].decoder[-1].weight.mul_(2.0)
        models["avd_network"].decoder[-1].bias.normal_(0.0, 0.4)
    os.makedirs(out, exist_ok=True)
    checkpoint = {name: model.state_dict() for name, model in models.items()}
    checkpoint["epoch"] = 0
    torch.save(checkpoint, os.path.join(out, "checkpoint.pth.tar"))
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)

    source = resize(imageio.imread(photo)[..., :3], (256, 256))
    reader = imageio.get_reader(clip)
    driving = [resize(frame, (256, 256))[..., :3] for _, frame in zip(range(frames), reader)]
    imageio.imwrite(os.path.join(out, "source.png"), img_as_ubyte(source))
    os.makedirs(os.path.join(out, "driving"), exist_ok=True)
    for i, frame in enumerate(driving):
        imageio.imwrite(os.path.join(out, "driving", "%04d.png" % i), img_as_ubyte(frame))
    # Both sides read the 8-bit files.
    source = imageio.imread(os.path.join(out, "source.png")) / 255.0
    driving = [imageio.imread(os.path.join(out, "driving", "%04d.png" % i)) / 255.0 for i in range(len(driving))]

    inpainting, kp_detector, dense_motion, avd = load_checkpoints(
        config_path, os.path.join(out, "checkpoint.pth.tar"), "cpu")
    for mode in MODES:
        predictions = make_animation(source, driving, inpainting, kp_detector, dense_motion, avd, "cpu", mode)
        folder = os.path.join(out, "official-" + mode)
        os.makedirs(folder, exist_ok=True)
        for i, frame in enumerate(predictions):
            imageio.imwrite(os.path.join(folder, "%04d.png" % i), img_as_ubyte(np.clip(frame, 0, 1)))
    print("torch", torch.__version__, "wrote", out)


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2])
    else:
        make(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 30)
