#!/usr/bin/env python3
"""Where a frame's GPU time goes, from CubeCL's kernel profile.

    CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/profile.log \\
        prioritycut bench animate --backend wgpu --runs 10 --warmup 3
    python3 tests/scripts/kernel_profile.py /tmp/profile.log LAUNCHES_PER_FRAME [TOP]

CubeCL prints one table per profiled scope (kernel name, device time, launches); a timed frame of
`bench animate` is one scope whose launch count is the frame's (the bench prints it: "N kernel
launches/frame"). This sums the kernel families (names without their hash) over those frames,
skipping the first three (compilation and autotuning), and prints time and launches per frame.
Profiling serialises the kernels, so the sum is device time without overlap, not a frame's wall time.
"""
import collections
import re
import sys

UNIT_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def tables(text):
    """(launches, [(kernel family, ms, launches)]) for every table of the log, in order."""
    current = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        time = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", cells[-3])
        if not time or not cells[-2].isdigit():
            continue
        name = re.sub(r"_[0-9a-f]{8}$", "", " | ".join(cells[:-3]))
        if name == "Total":
            yield int(cells[-2]), current
            current = []
        else:
            current.append((name, float(time.group(1)) * UNIT_MS[time.group(2)], int(cells[-2])))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    text = open(sys.argv[1], errors="replace").read()
    launches = int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    frames = [rows for count, rows in tables(text) if count == launches][3:]
    if not frames:
        sys.exit(f"no profiled scope of {launches} launches after the first three")
    by_family = collections.defaultdict(lambda: [0.0, 0])
    for rows in frames:
        for name, ms, count in rows:
            by_family[name][0] += ms
            by_family[name][1] += count
    per_frame = sum(ms for ms, _ in by_family.values()) / len(frames)
    print(f"{len(frames)} frames, {per_frame:.2f} ms of kernel time per frame")
    for name, (ms, count) in sorted(by_family.items(), key=lambda kv: -kv[1][0])[:top]:
        ms /= len(frames)
        print(f"{ms:7.3f} ms {count / len(frames):6.1f} launches {100 * ms / per_frame:5.1f}%  {name[:70]}")


if __name__ == "__main__":
    main()
