//! A vox-256 FOMM frame's 7×7 heads by the direct kernel, read channels-last (`forward`, what
//! inference runs: dot products over the input channels where they are whole vectors) against
//! the same convolution from zero-padded planes (`forward_nchw`, the training form's layout),
//! alternated in one process, the best of several runs each.
//!
//! `cargo bench -p prioritycut-kernels --bench direct_heads`

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use prioritycut_kernels::cpu::direct_conv::DirectConv;
use prioritycut_kernels::cpu::winograd::Nhwc;

/// (head, C_in, C_out, side of the input map, padding).
const HEADS: [(&str, usize, usize, usize, usize); 5] = [
    ("generator final (then sigmoid)", 64, 3, 256, 3),
    ("dense motion mask", 108, 11, 64, 3),
    ("dense motion occlusion", 108, 1, 64, 3),
    ("keypoint heatmaps", 35, 10, 64, 0),
    ("keypoint Jacobians", 35, 40, 64, 0),
];

const RUNS: usize = 9;

fn main() {
    let device = Device::flex();
    println!(
        "7x7 heads, f32, batch 1 | backend flex (CPU) | {} threads | best of {RUNS}, alternated",
        rayon::current_num_threads()
    );
    for (head, cin, cout, side, pad) in HEADS {
        let k = 7;
        let weight = Tensor::<4>::random([cout, cin, k, k], Distribution::Uniform(-0.02, 0.02), &device);
        let bias = Tensor::<1>::random([cout], Distribution::Uniform(-0.1, 0.1), &device);
        let conv = DirectConv::new(weight, Some(bias), pad);
        let x = Tensor::<4>::random([1, cin, side, side], Distribution::Uniform(-1.0, 1.0), &device);
        let planar: Vec<f32> = x.to_data().try_to_vec::<f32>().expect("f32 values");
        let channels_last = Nhwc::from_tensor(x);
        let time = |read_channels_last: bool| {
            let start = Instant::now();
            let y = if read_channels_last {
                conv.forward(&channels_last, &device)
            } else {
                conv.forward_nchw(&planar, [1, cin, side, side], &device)
            };
            std::hint::black_box(y.into_data());
            start.elapsed().as_secs_f64()
        };
        let (mut last, mut planes) = (f64::INFINITY, f64::INFINITY);
        for run in 0..=RUNS {
            let (a, b) = (time(true), time(false));
            if run > 0 {
                last = last.min(a);
                planes = planes.min(b);
            }
        }
        let out = (side + 2 * pad + 1 - k).pow(2);
        let gflop = 2.0 * (cin * cout * k * k * out) as f64 / 1e9;
        let by_channels = if cin % 16 == 0 {
            "channels-last"
        } else {
            "planes (channels not whole vectors)"
        };
        println!(
            "{head}: {cin} -> {cout} at {side}x{side} | forward ({by_channels}) {:.2} ms, {:.0} GFLOP/s | from planes {:.2} ms, {:.0} GFLOP/s | {:.2}x",
            last * 1e3,
            gflop / last,
            planes * 1e3,
            gflop / planes,
            planes / last
        );
    }
}
