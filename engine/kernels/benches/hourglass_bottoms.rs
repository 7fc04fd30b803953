//! The 3×3 convolutions at the bottom of a vox-256 FOMM's two hourglasses (keypoint detector,
//! dense motion), on maps of 8² and less: too few pixels for Winograd's tiles, so each is one
//! GEMM of its weights by its patches (`FusedConv3x3::forward_at`, f32), and the weights, 5–38
//! MB a layer used for 16–64 pixels, are what costs. Each line gives the layer's time, best of
//! 12 after a warm-up, the rate at which its weights were read (this 2-core Zen 4 VM reads ~20
//! GB/s from memory) and its arithmetic's (the 8² maps use each weight 64 times: they are
//! bound by the multiply-adds, the smaller ones by the weights).
//!
//! `cargo bench -p prioritycut-kernels --bench hourglass_bottoms`

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use prioritycut_kernels::Precision;
use prioritycut_kernels::cpu::winograd::{Fused, FusedConv3x3, Nhwc};

/// (layer, C_in, C_out, side of the input map, ×2 upsampling first, 2×2 pooling after).
type Layer = (&'static str, usize, usize, usize, bool, bool);

const LAYERS: [Layer; 8] = [
    ("keypoint detector, down 8² → 4²", 256, 512, 8, false, true),
    ("keypoint detector, down 4² → 2²", 512, 1024, 4, false, true),
    ("keypoint detector, up 2² → 4²", 1024, 512, 2, true, false),
    ("keypoint detector, up 4² → 8²", 1024, 256, 4, true, false),
    ("dense motion, down 8² → 4²", 512, 1024, 8, false, true),
    ("dense motion, down 4² → 2²", 1024, 1024, 4, false, true),
    ("dense motion, up 2² → 4²", 1024, 1024, 2, true, false),
    ("dense motion, up 4² → 8²", 2048, 512, 4, true, false),
];

const RUNS: usize = 12;

fn main() {
    let device = Device::flex();
    println!(
        "hourglass bottoms: 3x3 convolutions by patches, f32, batch 1 | backend flex (CPU) | {} threads | best of {RUNS}",
        rayon::current_num_threads()
    );
    let mut total = 0.0;
    for (layer, cin, cout, side, upsample_input, pool_output) in LAYERS {
        let weight = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Uniform(-0.05, 0.05), &device);
        let bias = Tensor::<1>::random([cout], Distribution::Uniform(-0.1, 0.1), &device);
        let fused = Fused {
            upsample_input,
            pool_output,
            relu: true,
            ..Fused::default()
        };
        let conv = FusedConv3x3::new(weight, Some(bias), None, fused);
        let x = Nhwc::from_tensor(Tensor::<4>::random(
            [1, cin, side, side],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        ));
        let mut best = f64::INFINITY;
        for run in 0..=RUNS {
            let start = Instant::now();
            std::hint::black_box(conv.forward_at(Precision::F32, &x, None));
            if run > 0 {
                best = best.min(start.elapsed().as_secs_f64());
            }
        }
        total += best;
        let megabytes = (cin * cout * 9 * 4) as f64 / 1e6;
        let output_side = if upsample_input { 2 * side } else { side };
        let gflop = 2.0 * (cin * cout * 9 * output_side * output_side) as f64 / 1e9;
        println!(
            "{layer}: {cin} -> {cout} | {:.2} ms | weights {megabytes:.1} MB read at {:.1} GB/s | {gflop:.2} GFLOP at {:.0} GFLOP/s",
            best * 1e3,
            megabytes / best / 1e3,
            gflop / best
        );
    }
    println!("these layers: {:.1} ms", total * 1e3);
}
