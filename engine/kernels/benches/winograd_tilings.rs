//! Inference's 3×3 convolutions of a vox-256 FOMM frame, from 32² maps up, by F(6×6, 3×3)
//! (`FusedConv3x3::forward_tiled`) against F(4×4, 3×3) (`FusedConv3x3::forward`, what training
//! runs), alternated in one process, the best of several runs each, so the machine's drift from
//! minute to minute falls on both alike. Inference (`forward_at`) takes F(6×6) from 128² maps
//! (`F6_MIN_PIXELS`); the smaller maps here show why not below. The transformed weights are
//! made in the warm-up, as an animation makes them once.
//!
//! `cargo bench -p prioritycut-kernels --bench winograd_tilings`

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use prioritycut_kernels::cpu::winograd::{ChannelAffine, Fused, FusedConv3x3, Nhwc, Tiling};

/// (layer, C_in, C_out, side of the input map, the block's fusions, calls a frame).
type Layer = (&'static str, usize, usize, usize, Block, usize);

#[derive(Clone, Copy)]
enum Block {
    /// A residual block's first convolution: batch norm and ReLU on its input, ReLU after.
    ResidualFirst,
    /// Its second: the skip added to its output.
    ResidualSecond,
    /// An up-block: ×2 nearest upsampling of its input, batch norm and ReLU after.
    Up,
    /// A down-block: batch norm and ReLU after, 2×2 average pooling.
    Down,
}

const LAYERS: [Layer; 6] = [
    ("generator bottleneck, first", 256, 256, 64, Block::ResidualFirst, 6),
    ("generator bottleneck, second", 256, 256, 64, Block::ResidualSecond, 6),
    ("generator decoder, 64² → 128²", 256, 128, 64, Block::Up, 1),
    ("generator decoder, 128² → 256²", 128, 64, 128, Block::Up, 1),
    ("keypoint detector, first down-block", 35, 64, 64, Block::Down, 1),
    ("dense motion decoder, last up-block", 128, 64, 32, Block::Up, 1),
];

const RUNS: usize = 7;

fn affine(channels: usize) -> ChannelAffine {
    let ones = vec![1.0; channels];
    let shift = vec![0.01; channels];
    ChannelAffine::batch_norm(&ones, &shift, &vec![0.0; channels], &ones, 1e-5)
}

fn main() {
    let device = Device::flex();
    println!(
        "inference 3x3 convolutions, f32, batch 1 | backend flex (CPU) | {} threads | best of {RUNS}, alternated",
        rayon::current_num_threads()
    );
    let (mut f4_frame, mut f6_frame) = (0.0, 0.0);
    for (layer, cin, cout, side, block, calls) in LAYERS {
        let weight = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Uniform(-0.05, 0.05), &device);
        let bias = Tensor::<1>::random([cout], Distribution::Uniform(-0.1, 0.1), &device);
        let fused = match block {
            Block::ResidualFirst => Fused {
                input_affine: Some(affine(cin)),
                relu: true,
                ..Fused::default()
            },
            Block::ResidualSecond => Fused {
                input_affine: Some(affine(cin)),
                ..Fused::default()
            },
            Block::Up => Fused {
                upsample_input: true,
                relu: true,
                ..Fused::default()
            },
            Block::Down => Fused {
                relu: true,
                pool_output: true,
                ..Fused::default()
            },
        };
        let out_norm = matches!(block, Block::Up | Block::Down).then(|| affine(cout));
        let conv = FusedConv3x3::new(weight, Some(bias), out_norm, fused);
        let x = Nhwc::from_tensor(Tensor::<4>::random(
            [1, cin, side, side],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        ));
        let residual = matches!(block, Block::ResidualSecond).then(|| x.clone());
        let time = |f6: bool| {
            let start = Instant::now();
            let y = if f6 {
                conv.forward_tiled(Tiling::F6x6, &x, residual.as_ref())
            } else {
                conv.forward(&x, residual.as_ref())
            };
            std::hint::black_box(y);
            start.elapsed().as_secs_f64()
        };
        let (mut f4, mut f6) = (f64::INFINITY, f64::INFINITY);
        for run in 0..=RUNS {
            let (a, b) = (time(false), time(true));
            if run > 0 {
                f4 = f4.min(a);
                f6 = f6.min(b);
            }
        }
        f4_frame += f4 * calls as f64;
        f6_frame += f6 * calls as f64;
        println!(
            "{layer}: {cin} -> {cout} at {side}x{side} | F(4x4) {:.2} ms | F(6x6) {:.2} ms | {:.2}x | {calls} a frame",
            f4 * 1e3,
            f6 * 1e3,
            f4 / f6
        );
    }
    println!(
        "these layers a frame: F(4x4) {:.1} ms | F(6x6) {:.1} ms | {:.2}x",
        f4_frame * 1e3,
        f6_frame * 1e3,
        f4_frame / f6_frame
    );
}
