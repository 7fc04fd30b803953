//! Forward + backward of the 3×3 convolutions at the bottom of vox-256's hourglasses (the
//! keypoint detector's and the dense motion network's, maps of 16², 8² and 4²), on flex under
//! autodiff: the kernels crate's (`kernels::convolve`) against burn's own (`Conv2d::forward`),
//! alternated in one process, the best of several runs each, so the machine's drift from minute
//! to minute falls on both alike. A training step calls each of these layers 3 times forward
//! (source, driving, transformed frame for the keypoint detector) and once or twice backward.
//!
//! `cargo bench -p prioritycut-engine --bench small_map_convolutions`

use std::time::Instant;

use prioritycut_engine::bench::CpuMachine;
use prioritycut_engine::burn::nn::PaddingConfig2d;
use prioritycut_engine::burn::nn::conv::{Conv2d, Conv2dConfig};
use prioritycut_engine::burn::tensor::{Device, Distribution, Tensor};
use prioritycut_engine::kernels::convolve;

/// (network, C_in, C_out, side): every 3×3 layer of vox-256's two hourglasses on maps under 32²,
/// as its config builds them (`block_expansion`, `max_features`, 5 blocks).
const LAYERS: [(&str, usize, usize, usize); 12] = [
    ("keypoint detector, encoder", 128, 256, 16),
    ("keypoint detector, encoder", 256, 512, 8),
    ("keypoint detector, encoder", 512, 1024, 4),
    ("keypoint detector, decoder", 1024, 512, 4),
    ("keypoint detector, decoder", 1024, 256, 8),
    ("keypoint detector, decoder", 512, 128, 16),
    ("dense motion, encoder", 256, 512, 16),
    ("dense motion, encoder", 512, 1024, 8),
    ("dense motion, encoder", 1024, 1024, 4),
    ("dense motion, decoder", 1024, 1024, 4),
    ("dense motion, decoder", 2048, 512, 8),
    ("dense motion, decoder", 1024, 256, 16),
];

const RUNS: usize = 7;

/// Seconds for one forward and backward (input and weight gradients) of `conv` on `x`.
fn forward_backward(conv: &Conv2d, x: &Tensor<4>, weighting: &Tensor<4>, ours: bool) -> f64 {
    let start = Instant::now();
    let x = x.clone().require_grad();
    let y = if ours {
        convolve(conv, x.clone())
    } else {
        conv.forward(x.clone())
    };
    let grads = (y * weighting.clone()).sum().backward();
    let dx = x.grad(&grads).expect("input gradient");
    let dw = conv.weight.val().grad(&grads).expect("weight gradient");
    // Read one value of each so that nothing is left pending.
    let _: (f32, f32) = (
        dx.slice([0..1, 0..1, 0..1, 0..1]).into_scalar(),
        dw.slice([0..1, 0..1, 0..1, 0..1]).into_scalar(),
    );
    start.elapsed().as_secs_f64()
}

fn main() {
    let device = Device::flex().autodiff();
    println!(
        "small-map 3x3 convolutions, forward + backward, batch 1 | backend flex (CPU) | CPU {} | best of {RUNS}, alternated",
        CpuMachine::detect().describe()
    );
    let (mut ours_total, mut burns_total) = (0.0, 0.0);
    for (network, cin, cout, side) in LAYERS {
        let conv = Conv2dConfig::new([cin, cout], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([1, cin, side, side], Distribution::Uniform(-1.0, 1.0), &device);
        let weighting = Tensor::<4>::random([1, cout, side, side], Distribution::Uniform(-1.0, 1.0), &device);
        let (mut ours, mut burns) = (f64::INFINITY, f64::INFINITY);
        // One warm-up each, then alternated.
        for run in 0..=RUNS {
            let a = forward_backward(&conv, &x, &weighting, true);
            let b = forward_backward(&conv, &x, &weighting, false);
            if run > 0 {
                ours = ours.min(a);
                burns = burns.min(b);
            }
        }
        ours_total += ours;
        burns_total += burns;
        println!(
            "{network:<27} {cin:>4} -> {cout:<4} at {side}x{side}: ours {:6.1} ms, burn's {:6.1} ms ({:.2}x)",
            ours * 1e3,
            burns * 1e3,
            burns / ours
        );
    }
    println!(
        "all {} layers once: ours {:.1} ms, burn's {:.1} ms ({:.2}x)",
        LAYERS.len(),
        ours_total * 1e3,
        burns_total * 1e3,
        burns_total / ours_total
    );
}
