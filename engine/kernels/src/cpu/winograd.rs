//! The CPU's fast 3×3 convolution for inference: Winograd's minimal filtering F(4×4, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) on channels-last
//! activations, with the neighbouring batch norms, ReLU, residual add, ×2 upsampling and 2×2
//! average pooling folded into the transforms.
//!
//! 3×3 stride-1 convolutions are about 95% of a FOMM frame's arithmetic. Each 6×6 input tile
//! gives a 4×4 output tile for 36 multiplies per channel pair instead of 144:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The 36 element-wise products summed over the input
//! channels are 36 independent GEMMs `[tiles × C_in] · [C_in × C_out]`, run by the backend's
//! batched matmul (flex: the `gemm` crate on every core). The transforms are memory-bound
//! passes over channel-contiguous rows, which the compiler vectorizes.
//!
//! Inference's f32 products take F(6×6, 3×3) on maps its tiles fit ([`Transforms::F6`]: 8×8 input
//! tiles, 64 products for 36 outputs, 21% fewer multiplies than F(4×4)); training keeps
//! F(4×4), whose tiles its weight gradient shares.
//!
//! Both compute the same sums as the direct convolution in a different order, so results differ
//! by float rounding only (tested against burn's `conv2d` below). An up-block's input, upsampled
//! ×2 by nearest neighbour, makes 15 of F(6×6)'s 64 products zero in every tile (the point
//! −1's: [`FusedConv3x3::kept_planes`]); they are not made: FOMM's decoder's two up-blocks
//! took 16.1 and 21.0 ms instead of 21.7–23.9 and 26.1–28.1 (2-core Zen 3,
//! `cargo bench -p prioritycut-kernels --bench winograd_tilings`).

use std::borrow::Cow;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::{with_scratch, zeroed};
use super::layout::transposed;
use super::simd::{vector_kernel, vectorized};
use super::unsafe_simd::bf16_gemm::{Bf16Columns, batched_gemm_bf16};
use super::unsafe_simd::f32_gemm::{self, F32Columns, batched_gemm_packed_at};
use super::unsafe_simd::gemm::{Matrices, batched_gemm};
use crate::precision::Precision;

/// A batch of activations laid out channels-last, `[batch, height, width, channels]`, so that a
/// pixel's channels are contiguous: what the transforms stream through. The values are owned,
/// or borrowed from a tensor that is already channels-last (the training step's VGG19).
#[derive(Debug, Clone)]
pub struct Nhwc<'a> {
    pub data: Cow<'a, [f32]>,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl<'a> Nhwc<'a> {
    /// From a tensor of logical shape `[b, c, h, w]` on flex, whatever its storage
    /// ([`super::layout::channels_last`]).
    pub fn from_tensor(x: Tensor<4>) -> Nhwc<'static> {
        let x = super::flex::primitive(x);
        super::layout::channels_last(&x).into_owned()
    }

    /// Channels-last values `[batch, height, width, channels]`, owned.
    pub fn owned(data: Vec<f32>, [batch, height, width, channels]: [usize; 4]) -> Nhwc<'static> {
        assert_eq!(data.len(), batch * height * width * channels, "values for the shape");
        Nhwc {
            data: Cow::Owned(data),
            batch,
            height,
            width,
            channels,
        }
    }

    /// The same maps, owning their values (a copy only where they were borrowed).
    pub fn into_owned(self) -> Nhwc<'static> {
        Nhwc {
            data: Cow::Owned(self.data.into_owned()),
            batch: self.batch,
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }

    /// Channels-last values `[batch, height, width, channels]` borrowed, not copied.
    pub fn borrowed(data: &'a [f32], [batch, height, width, channels]: [usize; 4]) -> Self {
        assert_eq!(data.len(), batch * height * width * channels, "values for the shape");
        Self {
            data: Cow::Borrowed(data),
            batch,
            height,
            width,
            channels,
        }
    }

    /// Back to a tensor of logical shape `[b, c, h, w]`, stored channels-last (a permuted view,
    /// the seam's convention: [`super::layout`]).
    pub fn into_tensor(self, device: &Device) -> Tensor<4> {
        self.into_channels_last(device).permute([0, 3, 1, 2])
    }

    /// The channels-last tensor `[batch, height, width, channels]` itself.
    pub fn into_channels_last(self, device: &Device) -> Tensor<4> {
        let shape = [self.batch, self.height, self.width, self.channels];
        Tensor::<4>::from_data(TensorData::new(self.data.into_owned(), shape), device)
    }

    /// Channels of `self` then of `other`, pixel by pixel (`torch.cat(dim=1)`).
    pub fn cat(&self, other: &Nhwc<'_>) -> Nhwc<'static> {
        assert_eq!(
            (self.batch, self.height, self.width),
            (other.batch, other.height, other.width),
            "concatenated maps have one size"
        );
        let channels = self.channels + other.channels;
        let mut data = Vec::with_capacity(self.data.len() + other.data.len());
        for (a, b) in self
            .data
            .chunks_exact(self.channels)
            .zip(other.data.chunks_exact(other.channels))
        {
            data.extend_from_slice(a);
            data.extend_from_slice(b);
        }
        Nhwc {
            data: data.into(),
            channels,
            ..*self
        }
    }

    #[inline(always)]
    fn pixel(&self, b: usize, y: usize, x: usize) -> &[f32] {
        let at = ((b * self.height + y) * self.width + x) * self.channels;
        &self.data[at..at + self.channels]
    }
}

/// `relu(scale · x + shift)` per channel: an eval-mode batch norm and its ReLU.
#[derive(Debug, Clone)]
pub struct ChannelAffine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl ChannelAffine {
    /// The batch norm `γ (x − μ) / √(σ² + ε) + β` as `scale · x + shift`, in f64.
    pub fn batch_norm(weight: &[f32], bias: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Self {
        let scale: Vec<f64> = weight
            .iter()
            .zip(var)
            .map(|(&g, &v)| g as f64 / (v as f64 + epsilon).sqrt())
            .collect();
        let shift = scale
            .iter()
            .zip(bias.iter().zip(mean))
            .map(|(&s, (&b, &m))| (b as f64 - m as f64 * s) as f32)
            .collect();
        Self {
            scale: scale.into_iter().map(|s| s as f32).collect(),
            shift,
        }
    }
}

/// A convolution's bias (zeros where it has none) with the batch norm after it folded in:
/// `b·s + t`, the bias of a prepared convolution whose weights are `w·s`.
pub(crate) fn bias_with_norm(
    bias: Option<Tensor<1>>,
    output_channels: usize,
    norm: Option<&ChannelAffine>,
) -> Vec<f32> {
    let mut bias = bias.map(to_vec).unwrap_or_else(|| vec![0.0; output_channels]);
    if let Some(norm) = norm {
        for ((b, &s), &t) in bias.iter_mut().zip(&norm.scale).zip(&norm.shift) {
            *b = *b * s + t;
        }
    }
    bias
}

/// What surrounds the convolution in the block it replaces.
#[derive(Debug, Clone, Default)]
pub struct Fused {
    /// Applied to the input before its zero padding (a pre-activation batch norm + ReLU).
    pub input_affine: Option<ChannelAffine>,
    /// The input is upsampled ×2 by nearest neighbour first (an `UpBlock2d`).
    pub upsample_input: bool,
    /// ReLU on the output (after the bias and any folded batch norm).
    pub relu: bool,
    /// 2×2 average pooling of the output after the ReLU (a `DownBlock2d`).
    pub pool_output: bool,
    /// The block's products may run in a reduced precision when one is chosen: a residual
    /// branch, whose output is added to an f32 skip path. F(4×4, 3×3)'s transforms scale bf16's
    /// rounding to ~1.6% of a layer's largest output even with [`Points::RECIPROCAL`] (a
    /// direct convolution: 0.2%), which the keypoints and the decoder's full-size layers pass
    /// on to the frame many times over; a residual branch much less (README, "Precision").
    pub tolerates_reduced_precision: bool,
}

/// Below this many 4×4 tiles per image, the direct convolution wins: the transformed weights
/// are 4× the raw ones and would be read for very little arithmetic.
const MIN_WINOGRAD_TILES: usize = 16;

/// From this many output pixels (128²) inference's f32 convolutions take F(6×6, 3×3): there
/// (FOMM's decoder, the source's encoder) it measured 1.25–1.33× F(4×4)'s speed per layer
/// (`cargo bench -p prioritycut-kernels --bench winograd_tilings`); on 64² maps, where its tiles
/// cut at the edge leave 16% fewer multiplies rather than 21%, 0.94–1.09× (FOMM's bottleneck),
/// for 1.78× the transformed weights (88 MB more for vox-256's twelve 256-channel layers, which
/// live puppeteering's resident memory has no room for).
pub const F6_MIN_PIXELS: usize = 128 * 128;

/// Whether a 3×3 convolution with a `height × width` output runs as one GEMM of its patches:
/// fewer than [`MIN_WINOGRAD_TILES`] 4×4 tiles.
fn by_patches(height: usize, width: usize) -> bool {
    height.div_ceil(4) * width.div_ceil(4) < MIN_WINOGRAD_TILES
}

/// Inference's products for a `height × width` output in `precision`: bf16's at
/// [`Points::RECIPROCAL`] where the block tolerates it (the CPU's reduced precision is bf16's;
/// f16 is a GPU's), else f32's by F(6×6) from [`F6_MIN_PIXELS`] where its tiles cover the map
/// with fewer multiplies, else by F(4×4).
fn inference_transforms(
    precision: Precision,
    tolerates_reduced_precision: bool,
    height: usize,
    width: usize,
) -> Transforms {
    if tolerates_reduced_precision && precision == Precision::Bf16 {
        return Transforms::F4(Points::RECIPROCAL);
    }
    let standard = Transforms::F4(Points::STANDARD);
    let large = height * width >= F6_MIN_PIXELS
        && Transforms::F6.multiplies(height, width) < standard.multiplies(height, width);
    if large { Transforms::F6 } else { standard }
}

/// The multiplies per input–output channel pair that [`FusedConv3x3::forward_at`] performs for
/// a `height × width` output (of an input `upsampled` ×2 or not: [`FusedConv3x3::kept_planes`]),
/// and the precision they run in: what a benchmark counts as the arithmetic done (the direct
/// convolution's `9 · height · width` is what the layer means).
pub fn inference_multiplies(
    precision: Precision,
    tolerates_reduced_precision: bool,
    upsampled: bool,
    height: usize,
    width: usize,
) -> (usize, Precision) {
    if by_patches(height, width) {
        return (9 * height * width, Precision::F32);
    }
    let transforms = inference_transforms(precision, tolerates_reduced_precision, height, width);
    let mut multiplies = transforms.multiplies(height, width);
    if transforms.products_precision() == Precision::F32 && f32_gemm::supported() {
        let kept = kept_planes(transforms, upsampled).len();
        multiplies = multiplies / transforms.planes() * kept;
    }
    (multiplies, transforms.products_precision())
}

/// [`FusedConv3x3::kept_planes`] of a convolution whose input is `upsampled` or not.
fn kept_planes(transforms: Transforms, upsampled: bool) -> Vec<usize> {
    let (input, planes) = (transforms.input(), transforms.planes());
    let minus_one = match transforms {
        Transforms::F4(Points::STANDARD) | Transforms::F6 if upsampled => Some(2),
        _ => None,
    };
    (0..planes)
        .filter(|&p| minus_one.is_none_or(|at| p / input != at && p % input != at))
        .collect()
}

/// The output tiles of one image: `rows × columns` of them, `side × side` each, cover
/// `height × width`.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    height: usize,
    width: usize,
    side: usize,
    rows: usize,
    columns: usize,
}

impl Tiles {
    fn new(transforms: Transforms, height: usize, width: usize) -> Self {
        let side = transforms.output();
        Self {
            height,
            width,
            side,
            rows: height.div_ceil(side),
            columns: width.div_ceil(side),
        }
    }
}

/// A 3×3, stride-1, padding-1 convolution with its block's batch norms folded in.
#[derive(Debug)]
pub struct FusedConv3x3 {
    input_channels: usize,
    output_channels: usize,
    /// [C_out, C_in, 3, 3] as the caller holds it: the tensor is shared, not copied, so an
    /// animation's model keeps its 3×3 weights once (its parameters) beside the one form its
    /// maps' size needs.
    weight: Tensor<4>,
    /// The output norm's scale per output channel, folded into each form as it is made.
    output_scale: Option<Vec<f32>>,
    /// The bias with the output norm folded in: `b·s + t`.
    bias: Vec<f32>,
    fused: Fused,
    /// Where the filters `g` of `G g Gᵀ` are read from.
    filters: Filters,
    /// F(4×4)'s `G g Gᵀ`, [36, C_in, C_out]: made on first use, as small maps never need it.
    transformed: OnceLock<F32Weights>,
    /// F(6×6)'s `G g Gᵀ`, [64, C_in, C_out], for inference's f32 products on larger maps: made
    /// on first use (a layer sees one size of map, so it holds one of the two f32 forms).
    transformed_f6: OnceLock<F32Weights>,
    /// `G g Gᵀ` at [`Points::RECIPROCAL`], rounded to bf16 and packed for the bf16 products:
    /// made on first use in bf16 (the f32 form, at the standard points, only where f32
    /// products ran too).
    transformed_bf16: OnceLock<Bf16Columns>,
    /// The filters as the patch GEMM reads them, [C_out, 9·C_in]: made on first use.
    patch_weight: OnceLock<Tensor<2>>,
    device: Device,
}

impl FusedConv3x3 {
    /// `weight` [C_out, C_in, 3, 3] and `bias` [C_out] of the convolution, then an optional
    /// batch norm on its output (folded into the weights).
    pub fn new(weight: Tensor<4>, bias: Option<Tensor<1>>, output_norm: Option<ChannelAffine>, fused: Fused) -> Self {
        let [output_channels, input_channels, kh, kw] = weight.dims();
        assert_eq!((kh, kw), (3, 3), "a 3×3 convolution");
        let device = weight.device();
        let bias = bias_with_norm(bias, output_channels, output_norm.as_ref());
        Self {
            input_channels,
            output_channels,
            weight,
            output_scale: output_norm.map(|norm| norm.scale),
            bias,
            fused,
            filters: Filters::Weight,
            transformed: OnceLock::new(),
            transformed_f6: OnceLock::new(),
            transformed_bf16: OnceLock::new(),
            patch_weight: OnceLock::new(),
            device,
        }
    }

    /// The convolution that gives `∂L/∂x` of the convolution by `weight` [C_out, C_in, 3, 3]
    /// from its `∂L/∂y`: `W'[i, o] = rot180(W[o, i])`, C_out → C_in. Its Winograd weights are
    /// read from `weight` as it is stored: burn copies a flipped, transposed view out value by
    /// value, which took 40% as long as the transform itself on 512 channels.
    pub fn input_gradient_of(weight: Tensor<4>) -> Self {
        let flipped = weight.clone().swap_dims(0, 1).flip([2, 3]);
        Self {
            filters: Filters::InputGradientOf(Box::new(weight)),
            ..Self::new(flipped, None, None, Fused::default())
        }
    }

    pub fn output_channels(&self) -> usize {
        self.output_channels
    }

    /// `x` [b, h, w, C_in] → [b, h', w', C_out]; `residual` (of the output's shape) is added last.
    /// F(4×4, 3×3) in f32, as training runs it (its weight gradient takes the same tiles).
    pub fn forward(&self, x: &Nhwc<'_>, residual: Option<&Nhwc<'_>>) -> Nhwc<'static> {
        self.forward_with(Transforms::F4(Points::STANDARD), x, residual)
    }

    /// Inference's [`FusedConv3x3::forward`]: the Winograd products in `precision` where the
    /// block tolerates it ([`Fused::tolerates_reduced_precision`]), by F(4×4, 3×3) at
    /// [`Points::RECIPROCAL`]; f32 products by F(6×6, 3×3) on maps of [`F6_MIN_PIXELS`] or
    /// more, F(4×4, 3×3) below; the direct path for small maps stays f32 (a small part of any
    /// frame).
    pub fn forward_at(&self, precision: Precision, x: &Nhwc<'_>, residual: Option<&Nhwc<'_>>) -> Nhwc<'static> {
        let scale = if self.fused.upsample_input { 2 } else { 1 };
        let (height, width) = (x.height * scale, x.width * scale);
        let tolerates = self.fused.tolerates_reduced_precision;
        self.forward_with(inference_transforms(precision, tolerates, height, width), x, residual)
    }

    /// [`FusedConv3x3::forward`] in f32 by `tiling` whatever the map's size (for benchmarks and
    /// tests; [`FusedConv3x3::forward_at`] chooses by size), by the patches where the map has
    /// fewer than [`MIN_WINOGRAD_TILES`] 4×4 tiles.
    pub fn forward_tiled(&self, tiling: Tiling, x: &Nhwc<'_>, residual: Option<&Nhwc<'_>>) -> Nhwc<'static> {
        let transforms = match tiling {
            Tiling::F4x4 => Transforms::F4(Points::STANDARD),
            Tiling::F6x6 => Transforms::F6,
        };
        self.forward_with(transforms, x, residual)
    }

    /// The convolution by `transforms`' products (bf16 at [`Points::RECIPROCAL`], else f32),
    /// or by the patches where the map is small.
    fn forward_with(&self, transforms: Transforms, x: &Nhwc<'_>, residual: Option<&Nhwc<'_>>) -> Nhwc<'static> {
        assert_eq!(x.channels, self.input_channels, "input channels");
        let scale = if self.fused.upsample_input { 2 } else { 1 };
        let (height, width) = (x.height * scale, x.width * scale);
        if by_patches(height, width) {
            return self.forward_patches(x, residual);
        }
        self.forward_winograd(transforms.products_precision(), transforms, x, height, width, residual)
    }

    fn forward_winograd(
        &self,
        precision: Precision,
        transforms: Transforms,
        x: &Nhwc<'_>,
        height: usize,
        width: usize,
        residual: Option<&Nhwc<'_>>,
    ) -> Nhwc<'static> {
        let cout = self.output_channels;
        let geometry = Tiles::new(transforms, height, width);
        let planes = transforms.planes();
        let pool = self.fused.pool_output;
        let (out_h, out_w) = if pool { (height / 2, width / 2) } else { (height, width) };
        let mut output = zeroed(x.batch * out_h * out_w * cout);

        // The output rows each row of tiles writes, grouped into blocks of tile rows.
        let all_rows = x.batch * geometry.rows;
        let rows_per_block = self.rows_per_block(planes, geometry.columns, all_rows);
        let mut blocks: Vec<Vec<(usize, &mut [f32])>> =
            (0..all_rows.div_ceil(rows_per_block)).map(|_| Vec::new()).collect();
        if out_h * out_w > 0 {
            let rows_per_tile = if pool { geometry.side / 2 } else { geometry.side };
            for (b, image) in output.chunks_mut(out_h * out_w * cout).enumerate() {
                for (tile_y, chunk) in image.chunks_mut(rows_per_tile * out_w * cout).enumerate() {
                    let row = b * geometry.rows + tile_y;
                    blocks[row / rows_per_block].push((row, chunk));
                }
            }
        }
        // A block at a time, so that its transformed tiles and products stay in cache and
        // their buffers are reused rather than freshly mapped (page faults cost more than the
        // arithmetic on maps of 256×256).
        let (cin, block_tiles) = (self.input_channels, rows_per_block.min(all_rows) * geometry.columns);
        let weight = match precision {
            Precision::F32 | Precision::F16 => match self.transformed_weight(transforms) {
                F32Weights::RowMajor(values) => Weights::F32(Matrices::row_major(values, cin, cout)),
                F32Weights::Packed(columns) => Weights::F32Packed(columns),
            },
            Precision::Bf16 => Weights::Bf16(self.transformed_weight_bf16()),
        };
        // The planes whose products the packed weights hold (the others are zero).
        let kept = self.kept_planes(transforms);
        // The tiles and products are written before they are read: scratch, not zeros.
        with_scratch(
            [planes * block_tiles * cin, planes * block_tiles * cout],
            |[transformed, products]| {
                for (block, out_rows) in blocks.into_iter().enumerate() {
                    let first_row = block * rows_per_block;
                    let rows = rows_per_block.min(all_rows - first_row);
                    let tiles = rows * geometry.columns;
                    let (transformed, products) = (
                        &mut transformed[..planes * tiles * cin],
                        &mut products[..planes * tiles * cout],
                    );
                    self.transform_input(transforms, x, &geometry, first_row, rows, transformed);
                    match weight {
                        Weights::F32(weight) => {
                            let tiles_in = Matrices::row_major(transformed, tiles, cin);
                            batched_gemm(products, false, tiles_in, weight, [tiles, cin, cout]);
                        }
                        Weights::F32Packed(weight) => {
                            batched_gemm_packed_at(products, transformed, weight, tiles, &kept);
                            for (plane, product) in products.chunks_mut(tiles * cout).enumerate() {
                                if !kept.contains(&plane) {
                                    product.fill(0.0);
                                }
                            }
                        }
                        Weights::Bf16(weight) => batched_gemm_bf16(products, transformed, weight, tiles),
                    }
                    self.transform_output(
                        transforms,
                        products,
                        &geometry,
                        first_row,
                        out_rows,
                        residual,
                        (out_h, out_w),
                    );
                }
            },
        );
        Nhwc {
            data: output.into(),
            batch: x.batch,
            height: out_h,
            width: out_w,
            channels: cout,
        }
    }

    /// Rows of tiles per block: up to about 4 MiB of transformed input or products (the fastest
    /// of 1–16 MiB on the 2-core Zen 3, within its noise), a multiple of the pool's threads and
    /// the blocks as even as that allows, since the transforms give each thread whole rows: the
    /// bottleneck's 16 rows of 590 KB had gone as 7, 7 and 2, one thread transforming 4 rows
    /// while the other waited after 3 (6, 6, 4 now: 4–6% less time per layer on 2 cores).
    fn rows_per_block(&self, planes: usize, columns: usize, all_rows: usize) -> usize {
        let per_row = planes * columns * self.input_channels.max(self.output_channels) * 4;
        let most = ((4 << 20) / per_row.max(1)).max(1);
        even_blocks(all_rows, most, rayon::current_num_threads())
    }

    /// `Bᵀ d B` of the tiles of `rows` rows of tiles from `first_row`: a plane of [tiles, C_in]
    /// per product into `transformed`, one task per row of tiles.
    fn transform_input(
        &self,
        transforms: Transforms,
        x: &Nhwc,
        geometry: &Tiles,
        first_row: usize,
        rows: usize,
        transformed: &mut [f32],
    ) {
        let fused = &self.fused;
        transform_input_rows(
            transforms,
            x,
            geometry,
            fused.input_affine.as_ref(),
            fused.upsample_input,
            (first_row, rows),
            transformed,
        )
    }

    /// `Aᵀ m A` of a block's products ([planes, tiles, C_out]), plus the bias, ReLU, pooling or
    /// residual, into the output rows of its rows of tiles.
    #[allow(clippy::too_many_arguments)]
    fn transform_output(
        &self,
        transforms: Transforms,
        products: &[f32],
        geometry: &Tiles,
        first_row: usize,
        out_rows: Vec<(usize, &mut [f32])>,
        residual: Option<&Nhwc>,
        (out_h, out_w): (usize, usize),
    ) {
        out_rows.into_par_iter().for_each(|(row, chunk)| {
            vectorized(OutputRow(OutputRowArgs {
                transforms,
                products,
                geometry,
                block_row: row - first_row,
                row,
                output: chunk,
                conv: self,
                residual,
                output_size: (out_h, out_w),
            }))
        });
    }

    /// Small maps: the same fused block as one GEMM of the weights `[C_out, 9·C_in]` by the
    /// maps' 3×3 patches `[pixels, 9·C_in]`.
    pub(crate) fn forward_patches(&self, x: &Nhwc<'_>, residual: Option<&Nhwc<'_>>) -> Nhwc<'static> {
        let mut input = x.clone();
        if let Some(a) = &self.fused.input_affine {
            for pixel in input.data.to_mut().chunks_exact_mut(input.channels) {
                for ((v, &k), &t) in pixel.iter_mut().zip(&a.scale).zip(&a.shift) {
                    *v = (k * *v + t).max(0.0);
                }
            }
        }
        if self.fused.upsample_input {
            input = upsample2(&input);
        }
        let (cin, cout) = (self.input_channels, self.output_channels);
        let (h, w) = (input.height, input.width);
        let pixels = input.batch * h * w;
        // The weights [C_out, C_in·9] serve as they are, no copy made: `y = (W · Pᵀ)ᵀ`. (As
        // `P · Wᵀ`, the GEMM read W across its rows: the hourglasses' bottom took 1.4× as long.)
        let weight = self.patch_weight();
        let patches = patches(&input);
        // `W · Pᵀ` is [C_out, pixels]: transposed to channels-last by the parallel tiles (flex's
        // copy of the transposed view ran on one core).
        let product = if f32_gemm::supported() {
            with_values(&weight, |weight| patch_product_packed(weight, &patches, cout, 9 * cin))
        } else {
            let patches = Tensor::<2>::from_data(TensorData::new(patches, [pixels, 9 * cin]), &self.device);
            to_vec(weight.matmul(patches.transpose()))
        };
        let mut y = Nhwc {
            data: transposed(&product, [1, cout, 1, pixels]).into(),
            batch: input.batch,
            height: h,
            width: w,
            channels: cout,
        };
        drop(product);
        let ones = vec![1.0; cout];
        let scale = self.output_scale.as_ref().unwrap_or(&ones);
        let relu = self.fused.relu;
        y.data.to_mut().par_chunks_mut((cout * 64).max(1)).for_each(|pixels| {
            for pixel in pixels.chunks_exact_mut(cout) {
                for ((v, &s), &b) in pixel.iter_mut().zip(scale).zip(&self.bias) {
                    *v = *v * s + b;
                    if relu {
                        *v = v.max(0.0);
                    }
                }
            }
        });
        if let Some(r) = residual {
            y.data.to_mut().iter_mut().zip(r.data.iter()).for_each(|(v, r)| *v += r);
        }
        if self.fused.pool_output {
            y = avg_pool2(&y);
        }
        y
    }

    /// The filters `[C_out, 9·C_in]`, input channel then tap, as the patches are ordered: the
    /// weight itself, or the forward convolution's rearranged in parallel (the flipped view's
    /// reshape copied it on one core, 9 MB for VGG19's deepest layers at every call).
    fn patch_weight(&self) -> Tensor<2> {
        let (cin, cout) = (self.input_channels, self.output_channels);
        let weight = self.patch_weight.get_or_init(|| match &self.filters {
            Filters::Weight => self.weight.clone().reshape([cout, 9 * cin]),
            Filters::InputGradientOf(forward) => with_values(forward, |values| {
                let mut rows = zeroed(cout * cin * 9);
                rows.par_chunks_mut((cin * 9).max(1)).enumerate().for_each(|(o, row)| {
                    for (i, filter) in row.chunks_exact_mut(9).enumerate() {
                        filter.copy_from_slice(&self.filter(values, true, o, i));
                    }
                });
                Tensor::from_data(TensorData::new(rows, [cout, 9 * cin]), &self.device)
            }),
        });
        weight.clone()
    }

    /// The f32 products' weights for `transforms` (F(4×4) at the standard points, or F(6×6)):
    /// packed for our micro-kernel where the CPU runs it, else row-major for the `gemm` crate.
    fn transformed_weight(&self, transforms: Transforms) -> &F32Weights {
        let made = || {
            if f32_gemm::supported() {
                F32Weights::Packed(self.transform_weight_packed(transforms))
            } else {
                F32Weights::RowMajor(self.transform_weight(transforms))
            }
        };
        match transforms {
            Transforms::F4(points) => {
                debug_assert_eq!(points, Points::STANDARD, "f32 products at the standard points");
                self.transformed.get_or_init(made)
            }
            Transforms::F6 => self.transformed_f6.get_or_init(made),
        }
    }

    fn transformed_weight_bf16(&self) -> &Bf16Columns {
        self.transformed_bf16.get_or_init(|| {
            let points = Points::for_precision(Precision::Bf16);
            Bf16Columns::pack(
                &self.transform_weight(Transforms::F4(points)),
                self.input_channels,
                self.output_channels,
            )
        })
    }

    /// [`FusedConv3x3::transform_weight`] written straight into the micro-kernel's panels.
    /// Only the [`FusedConv3x3::kept_planes`].
    fn transform_weight_packed(&self, transforms: Transforms) -> F32Columns {
        let (cin, cout) = (self.input_channels, self.output_channels);
        let kept = self.kept_planes(transforms);
        let mut packed = F32Columns::zeroed(kept.len(), cin, cout);
        let panel = packed.panel_columns();
        self.with_filter_values(|values, flipped| {
            self.transform_filters(values, flipped, transforms, &kept, packed.rows_mut(), panel)
        });
        packed
    }

    /// The planes of `transforms` whose products the packed f32 weights hold: all but those
    /// that are zero for every tile of this convolution's input. Where the input is upsampled
    /// ×2 by nearest neighbour, a tile's rows and columns start one pixel before an even one
    /// (tiles of an even side, padding 1), so from the second on their values come in equal
    /// pairs, and the row of `Bᵀ d` at the point −1 (index 2 of the standard F(4×4)'s and of
    /// F(6×6)'s points: `4(d1 − d2) − d3 + d4`, `(d2 − d1) − 4.25 (d4 − d3) + (d6 − d5)`) is
    /// zero: 11 of F(4×4)'s 36 planes and 15 of F(6×6)'s 64 (the decoders' up-blocks), whose
    /// products need not be made.
    fn kept_planes(&self, transforms: Transforms) -> Vec<usize> {
        kept_planes(transforms, self.fused.upsample_input)
    }

    /// `G g Gᵀ` of every filter, [planes, C_in, C_out].
    fn transform_weight(&self, transforms: Transforms) -> Vec<f32> {
        let (cin, cout) = (self.input_channels, self.output_channels);
        let mut u = zeroed(transforms.planes() * cin * cout);
        let rows = u.chunks_mut(cout.max(1)).map(|row| vec![row]).collect();
        let every_plane: Vec<usize> = (0..transforms.planes()).collect();
        self.with_filter_values(|values, flipped| {
            self.transform_filters(values, flipped, transforms, &every_plane, rows, cout.max(1))
        });
        u
    }

    /// `f` of the filters' values, row-major, and whether they are flipped (the forward
    /// convolution's, for its input gradient).
    fn with_filter_values<R>(&self, f: impl FnOnce(&[f32], bool) -> R) -> R {
        let (source, flipped) = match &self.filters {
            Filters::Weight => (&self.weight, false),
            Filters::InputGradientOf(forward) => (forward.as_ref(), true),
        };
        with_values(source, |values| f(values, flipped))
    }

    /// Filter (o, i) of `values`, row-major: W[o, i], or (`flipped`, the filters being the
    /// forward convolution's) rot180 of W[i, o].
    fn filter(&self, values: &[f32], flipped: bool, o: usize, i: usize) -> [f32; 9] {
        let mut g = [0.0f32; 9];
        if flipped {
            g.copy_from_slice(&values[(i * self.output_channels + o) * 9..][..9]);
            g.reverse();
        } else {
            g.copy_from_slice(&values[(o * self.input_channels + i) * 9..][..9]);
        }
        g
    }

    /// The weights' rows `rows` (`[planes, C_in]` of them for the `planes` of `transforms` kept,
    /// in that order, each `C_out` values as segments of `segment` columns: one for a row-major
    /// matrix, a panel's for packed panels) written from the filters' values.
    #[allow(clippy::too_many_arguments)]
    fn transform_filters(
        &self,
        values: &[f32],
        flipped: bool,
        transforms: Transforms,
        planes: &[usize],
        rows: Vec<Vec<&mut [f32]>>,
        segment: usize,
    ) {
        let (cin, cout) = (self.input_channels, self.output_channels);
        let filter = |o: usize, i: usize| self.filter(values, flipped, o, i);
        let scale = |o: usize| self.output_scale.as_ref().map_or(1.0, |s| f64::from(s[o]));
        // Laid out as [planes, C_in, C_out]: a task per input channel transforms its C_out
        // filters and writes their values into its rows, column by column, so each row is
        // filled while it is in cache. (Transforming into [C_out, C_in, 36] first and gathering
        // at a stride of 36·C_in re-read every value 36 times from memory: 12% of a training
        // step, which transforms its weights at every call.)
        assert_eq!(rows.len(), planes.len() * cin, "a row per plane kept and input channel");
        // LANES divides a segment, so that a run of LANES columns lies within one.
        debug_assert!(segment == cout.max(1) || segment.is_multiple_of(LANES));
        let mut rows_of_channel: Vec<Vec<Vec<&mut [f32]>>> =
            (0..cin).map(|_| Vec::with_capacity(planes.len())).collect();
        for (row, segments) in rows.into_iter().enumerate() {
            rows_of_channel[row % cin].push(segments);
        }
        rows_of_channel.into_par_iter().enumerate().for_each(|(i, mut rows)| {
            // LANES filters at a time, transformed lane by lane (vector arithmetic: with the
            // input gradient's weights read in place, a 512 → 512 convolution's forward and
            // backward at 32² went from 123–133 ms to 74–82 ms), each row's LANES values
            // written as one cache line: the rows lie a power of two apart, and a value at a
            // time thrashed the caches' sets.
            let mut taps = [[0.0f64; LANES]; 9];
            for first in (0..cout).step_by(LANES) {
                let count = LANES.min(cout - first);
                for k in 0..count {
                    for (tap, &v) in taps.iter_mut().zip(&filter(first + k, i)) {
                        tap[k] = f64::from(v);
                    }
                }
                let (f4, f6);
                let block: &[[f64; LANES]] = match transforms {
                    Transforms::F4(points) => {
                        f4 = weight_transform(points, &taps);
                        &f4
                    }
                    Transforms::F6 => {
                        f6 = weight_transform6(&taps);
                        &f6
                    }
                };
                let (at, offset) = (first / segment, first % segment);
                for (row, line) in rows.iter_mut().zip(planes.iter().map(|&p| &block[p])) {
                    let run = &mut row[at][offset..][..count];
                    for (k, (out, &v)) in run.iter_mut().zip(line).enumerate() {
                        *out = (v * scale(first + k)) as f32;
                    }
                }
            }
        });
    }
}

/// The transformed weights a block's products read, at the precision they run in.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(Matrices<'a>),
    F32Packed(&'a F32Columns),
    Bf16(&'a Bf16Columns),
}

/// A convolution's f32 transformed weights, as the CPU's products read them.
#[derive(Debug)]
enum F32Weights {
    /// Row-major `[planes, C_in, C_out]`, for the `gemm` crate.
    RowMajor(Vec<f32>),
    /// Packed once for our micro-kernels (AVX-512 or AVX2, [`f32_gemm`]).
    Packed(F32Columns),
}

/// Where a [`FusedConv3x3`]'s filters come from.
#[derive(Debug)]
enum Filters {
    /// Its `weight`, [C_out, C_in, 3, 3].
    Weight,
    /// The weights [C_in, C_out, 3, 3] of the convolution whose input gradient it computes:
    /// filter `(o, i)` is `rot180(W[i, o])`.
    InputGradientOf(Box<Tensor<4>>),
}

/// `Bᵀ d B` of the tiles of `rows` rows of tiles from `first_row` of `x` (optionally through
/// `affine` and a ×2 upsampling first): `transforms`' planes of [tiles, C_in] into `transformed`,
/// one task per row of tiles.
fn transform_input_rows(
    transforms: Transforms,
    x: &Nhwc,
    geometry: &Tiles,
    affine: Option<&ChannelAffine>,
    upsample: bool,
    (first_row, rows): (usize, usize),
    transformed: &mut [f32],
) {
    transform_by_row(
        transforms.planes(),
        x.channels,
        geometry,
        rows,
        transformed,
        |r, planes| {
            vectorized(InputRow(InputRowArgs {
                transforms,
                x,
                geometry,
                affine,
                upsample,
                row: first_row + r,
                planes,
            }))
        },
    )
}

/// Rows per block for `all` rows in blocks of at most about `most`: a multiple of `threads`
/// where `most` allows one, the fewest blocks, and those as even as the multiple allows.
fn even_blocks(all: usize, most: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    if most < threads || all <= threads {
        return most.max(1);
    }
    let rows = most / threads * threads;
    let blocks = all.div_ceil(rows);
    all.div_ceil(blocks).next_multiple_of(threads).min(rows)
}

/// `planes` planes of [tiles, channels] for `rows` rows of tiles, `transformed`, filled by
/// `row(r, its part of each plane)` on every core.
fn transform_by_row(
    planes: usize,
    channels: usize,
    geometry: &Tiles,
    rows: usize,
    transformed: &mut [f32],
    row: impl Fn(usize, Vec<&mut [f32]>) + Send + Sync,
) {
    let tiles = rows * geometry.columns;
    assert_eq!(
        transformed.len(),
        planes * tiles * channels,
        "{planes} planes of the block's tiles"
    );
    let mut row_parts: Vec<Vec<&mut [f32]>> = (0..rows).map(|_| Vec::with_capacity(planes)).collect();
    for plane in transformed.chunks_mut(tiles * channels) {
        for (parts, part) in row_parts.iter_mut().zip(plane.chunks_mut(geometry.columns * channels)) {
            parts.push(part);
        }
    }
    row_parts
        .into_par_iter()
        .enumerate()
        .for_each(|(r, planes)| row(r, planes));
}

/// `A dy Aᵀ` of the 4×4 tiles of an output gradient, the tiles of `rows` rows of tiles from
/// `first_row`: 36 planes of [tiles, C_out] (zero beyond the map) into `transformed`.
fn transform_gradient_rows(dy: &Nhwc, geometry: &Tiles, (first_row, rows): (usize, usize), transformed: &mut [f32]) {
    transform_by_row(36, dy.channels, geometry, rows, transformed, |r, planes| {
        vectorized(GradientRow(GradientRowArgs {
            dy,
            geometry,
            row: first_row + r,
            planes,
        }))
    })
}

/// Each pixel's 3×3 patch of `x` (zero padding 1), `[pixels, 9·C_in]`: input channel then tap,
/// as the weights `[C_out, C_in, 3, 3]` are ordered.
fn patches(x: &Nhwc) -> Vec<f32> {
    let (h, w, cin) = (x.height, x.width, x.channels);
    let mut patches = zeroed(x.batch * h * w * 9 * cin);
    patches
        .par_chunks_mut((9 * cin).max(1))
        .enumerate()
        .for_each(|(i, patch)| {
            let (b, y, xx) = (i / (h * w), i / w % h, i % w);
            for tap in 0..9 {
                let sy = (y + tap / 3).wrapping_sub(1);
                let sx = (xx + tap % 3).wrapping_sub(1);
                if sy < h && sx < w {
                    for (dst, &v) in patch[tap..].iter_mut().step_by(9).zip(x.pixel(b, sy, sx)) {
                        *dst = v;
                    }
                }
            }
        });
    patches
}

/// `∂L/∂x` [b, h, w, C_in] of the 3×3, stride-1, padding-1 convolution by `weight` [C_out,
/// C_in, 3, 3] of a small map whose output gradient is `dy`: one GEMM `dy [pixels, C_out] ·
/// W [C_out, 9·C_in]` (the weights as stored) gives each pixel's patch gradient, and each input
/// pixel gathers its nine taps from its neighbours' patches. Through the convolution by the
/// rotated weights (`W'[i, o] = rot180(W[o, i])`) the weights were first copied rotated, 9.4M
/// values for the dense motion network's 1024 → 1024, at every call.
pub fn patch_input_gradient(weight: &Tensor<4>, dy: &Nhwc, device: &Device) -> Nhwc<'static> {
    let [cout, cin, kh, kw] = weight.dims();
    assert_eq!(
        (kh, kw, cout),
        (3, 3, dy.channels),
        "a 3×3 convolution of dy's channels"
    );
    let (batch, h, w) = (dy.batch, dy.height, dy.width);
    let pixels = batch * h * w;
    let dy_rows = Tensor::<2>::from_data(TensorData::new(dy.data.to_vec(), [pixels, cout]), device);
    let patch_gradient = to_vec(dy_rows.matmul(weight.clone().reshape([cout, 9 * cin])));
    let mut dx = zeroed(pixels * cin);
    dx.par_chunks_mut(cin.max(1)).enumerate().for_each(|(q, gradient)| {
        let (b, y, x) = (q / (h * w), q / w % h, q % w);
        // The output pixel `p` read input pixel `q` through tap `t` when q = p + (t/3 − 1, t%3 − 1).
        for tap in 0..9 {
            let py = (y + 1).wrapping_sub(tap / 3);
            let px = (x + 1).wrapping_sub(tap % 3);
            if py < h && px < w {
                let patch = &patch_gradient[((b * h + py) * w + px) * 9 * cin..][..9 * cin];
                for (value, &g) in gradient.iter_mut().zip(patch[tap..].iter().step_by(9)) {
                    *value += g;
                }
            }
        }
    });
    Nhwc::owned(dx, [batch, h, w, cin])
}

/// `∂L/∂W` [C_out, C_in, 3, 3] of the 3×3, stride-1, padding-1 convolution of a small map `x`
/// whose output gradient is `dy`, as one GEMM: `dyᵀ [C_out, pixels] · patches [pixels, 9·C_in]`.
/// [`weight_gradient`] makes and transforms back 36·C_in·C_out values at every call, whatever
/// the map's size: on a few tiles that costs more than its quarter of the multiplies saves.
pub fn patch_weight_gradient(x: &Nhwc, dy: &Nhwc, device: &Device) -> Tensor<4> {
    assert_eq!(
        (x.batch, x.height, x.width),
        (dy.batch, dy.height, dy.width),
        "a stride-1 convolution's input and output gradient have one size"
    );
    let (cin, cout) = (x.channels, dy.channels);
    let pixels = x.batch * x.height * x.width;
    let patches = Tensor::<2>::from_data(TensorData::new(patches(x), [pixels, 9 * cin]), device);
    let dy = Tensor::<2>::from_data(TensorData::new(dy.data.to_vec(), [pixels, cout]), device);
    dy.transpose().matmul(patches).reshape([cout, cin, 3, 3])
}

/// Transformed input (or gradient) per block of [`weight_gradient`].
const WEIGHT_GRADIENT_BLOCK_BYTES: usize = 32 << 20;

/// `∂L/∂W` [C_out, C_in, 3, 3] of the 3×3, stride-1, padding-1 convolution of `x` whose output
/// gradient is `dy`, by the same F(4×4, 3×3): the forward pass is `Y = Aᵀ [U ⊙ V] A` with
/// `U = G g Gᵀ`, so `∂L/∂U = Σ_tiles (A ∂L/∂Y Aᵀ) ⊙ V` (36 GEMMs `[C_out × tiles] · [tiles ×
/// C_in]`) and `∂L/∂g = Gᵀ (∂L/∂U) G`: a quarter of the direct correlation's multiplies.
pub fn weight_gradient(x: &Nhwc, dy: &Nhwc, device: &Device) -> Tensor<4> {
    assert_eq!(
        (x.batch, x.height, x.width),
        (dy.batch, dy.height, dy.width),
        "a stride-1 convolution's input and output gradient have one size"
    );
    let (cin, cout) = (x.channels, dy.channels);
    let geometry = Tiles::new(Transforms::F4(Points::STANDARD), x.height, x.width);
    // Tiles are the GEMMs' inner dimension here: large blocks keep them long.
    let per_row = 36 * geometry.columns * cin.max(cout) * 4;
    let rows_per_block = ((WEIGHT_GRADIENT_BLOCK_BYTES) / per_row.max(1)).max(1);
    let all_rows = x.batch * geometry.rows;
    let block_tiles = rows_per_block.min(all_rows) * geometry.columns;
    // (Zeroed on the pool: tens of MB each, and the transforms overwrite them anyway.)
    let (mut v, mut g) = (zeroed(36 * block_tiles * cin), zeroed(36 * block_tiles * cout));
    // Σ over blocks of gᵀ·v, accumulated in place.
    let mut du = zeroed(36 * cout * cin);
    for first_row in (0..all_rows).step_by(rows_per_block) {
        let rows = rows_per_block.min(all_rows - first_row);
        let tiles = rows * geometry.columns;
        let (v, g) = (&mut v[..36 * tiles * cin], &mut g[..36 * tiles * cout]);
        transform_input_rows(
            Transforms::F4(Points::STANDARD),
            x,
            &geometry,
            None,
            false,
            (first_row, rows),
            v,
        );
        transform_gradient_rows(dy, &geometry, (first_row, rows), g);
        let g_t = Matrices::row_major(g, tiles, cout).transposed();
        batched_gemm(
            &mut du,
            true,
            g_t,
            Matrices::row_major(v, tiles, cin),
            [cout, tiles, cin],
        );
    }
    // `Gᵀ (∂L/∂U) G`, LANES filters at a time: a task per output channel, its filters' 36
    // values read as runs of LANES from the 36 planes of `du`.
    let mut dw = zeroed(cout * cin * 9);
    dw.par_chunks_mut(cin * 9).enumerate().for_each(|(o, filters)| {
        let mut u = [[0.0f64; LANES]; 36];
        for first in (0..cin).step_by(LANES) {
            let count = LANES.min(cin - first);
            for (p, lane) in u.iter_mut().enumerate() {
                for (value, &d) in lane.iter_mut().zip(&du[(p * cout + o) * cin + first..][..count]) {
                    *value = f64::from(d);
                }
            }
            let g = weight_gradient_transform(&u);
            for (k, filter) in filters[first * 9..][..count * 9].chunks_exact_mut(9).enumerate() {
                for (value, tap) in filter.iter_mut().zip(&g) {
                    *value = tap[k] as f32;
                }
            }
        }
    });
    Tensor::from_data(TensorData::new(dw, [cout, cin, 3, 3]), device)
}

/// Channels a transform works through at a time: its three 36-value tiles of them (27 KiB;
/// F(6×6)'s 64-value ones 48 KiB) stay in the first-level cache, where whole rows of 256
/// channels (108 KiB) did not.
const TRANSFORM_CHANNELS: usize = 64;

/// One row of tiles of [`transform_input_rows`].
struct InputRowArgs<'a> {
    transforms: Transforms,
    x: &'a Nhwc<'a>,
    geometry: &'a Tiles,
    /// Applied (with a ReLU) to each input value as it is read.
    affine: Option<&'a ChannelAffine>,
    /// The input is read upsampled ×2 (nearest).
    upsample: bool,
    /// The row's place among all rows of tiles (image and tile row).
    row: usize,
    /// The row's part of each plane.
    planes: Vec<&'a mut [f32]>,
}
struct InputRow<'a>(InputRowArgs<'a>);
vector_kernel!(InputRow<'_> => input_tiles_row);

/// One row of tiles of [`transform_gradient_rows`].
struct GradientRowArgs<'a> {
    dy: &'a Nhwc<'a>,
    geometry: &'a Tiles,
    /// The row's place among all rows of tiles (image and tile row).
    row: usize,
    /// The row's part of each of the 36 planes.
    planes: Vec<&'a mut [f32]>,
}
struct GradientRow<'a>(GradientRowArgs<'a>);
vector_kernel!(GradientRow<'_> => gradient_tiles_row);

/// One row of tiles of [`FusedConv3x3::transform_output`].
struct OutputRowArgs<'a> {
    transforms: Transforms,
    /// A block's products, a plane of [tiles, C_out] per product.
    products: &'a [f32],
    geometry: &'a Tiles,
    /// The row's place in its block's products.
    block_row: usize,
    /// The row's place among all rows of tiles (image and tile row).
    row: usize,
    /// Where the row's output pixels go.
    output: &'a mut [f32],
    conv: &'a FusedConv3x3,
    residual: Option<&'a Nhwc<'a>>,
    /// The output's height and width (after any pooling).
    output_size: (usize, usize),
}
struct OutputRow<'a>(OutputRowArgs<'a>);
vector_kernel!(OutputRow<'_> => output_tiles_row);

/// `Bᵀ d B` of one row of tiles, into its part of each plane.
#[inline(always)]
fn input_tiles_row(args: InputRowArgs) {
    let InputRowArgs {
        transforms,
        x,
        geometry,
        affine,
        upsample,
        row,
        mut planes,
    } = args;
    let cin = x.channels;
    let (height, width) = (geometry.height, geometry.width);
    let (b, tile_y) = (row / geometry.rows, row % geometry.rows);
    let (side, input) = (geometry.side, transforms.input());
    let chunk = cin.min(TRANSFORM_CHANNELS);
    let mut patch = vec![0.0f32; input * input * chunk];
    let mut half = vec![0.0f32; input * input * chunk];
    let mut done = vec![0.0f32; input * input * chunk];
    for tile_x in 0..geometry.columns {
        for first in (0..cin).step_by(chunk) {
            let n = chunk.min(cin - first);
            for i in 0..input {
                for j in 0..input {
                    let dst = &mut patch[(i * input + j) * n..][..n];
                    // Padding 1: the patch starts one pixel above and left of the tile.
                    let y = (side * tile_y + i).wrapping_sub(1);
                    let xx = (side * tile_x + j).wrapping_sub(1);
                    if y >= height || xx >= width {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = if upsample {
                        x.pixel(b, y / 2, xx / 2)
                    } else {
                        x.pixel(b, y, xx)
                    };
                    let src = &src[first..][..n];
                    match affine {
                        None => dst.copy_from_slice(src),
                        Some(a) => {
                            let (scale, shift) = (&a.scale[first..][..n], &a.shift[first..][..n]);
                            for (((d, &s), &k), &t) in dst.iter_mut().zip(src).zip(scale).zip(shift) {
                                *d = (k * s + t).max(0.0);
                            }
                        }
                    }
                }
            }
            // Along each row of the patch, then along each column.
            let row = input * n;
            for i in 0..input {
                transforms.input_transform(&patch[i * row..], n, &mut half[i * row..], n, n);
            }
            for j in 0..input {
                transforms.input_transform(&half[j * n..], row, &mut done[j * n..], row, n);
            }
            for (p, plane) in planes.iter_mut().enumerate() {
                plane[tile_x * cin + first..][..n].copy_from_slice(&done[p * n..][..n]);
            }
        }
    }
}

/// `A dy Aᵀ` of one row of 4×4 output-gradient tiles, into its part of each of the 36 planes.
#[inline(always)]
fn gradient_tiles_row(args: GradientRowArgs) {
    let GradientRowArgs {
        dy,
        geometry,
        row,
        mut planes,
    } = args;
    let cout = dy.channels;
    let (height, width) = (geometry.height, geometry.width);
    let (b, tile_y) = (row / geometry.rows, row % geometry.rows);
    let mut patch = vec![0.0f32; 16 * cout];
    let mut half = vec![0.0f32; 24 * cout];
    let mut done = vec![0.0f32; 36 * cout];
    for tile_x in 0..geometry.columns {
        for i in 0..4 {
            for j in 0..4 {
                let dst = &mut patch[(i * 4 + j) * cout..][..cout];
                let (y, xx) = (4 * tile_y + i, 4 * tile_x + j);
                if y >= height || xx >= width {
                    dst.fill(0.0);
                } else {
                    dst.copy_from_slice(dy.pixel(b, y, xx));
                }
            }
        }
        // Along each row of the tile (4 → 6 values), then along each column (4 → 6 rows).
        for i in 0..4 {
            gradient_transform(&patch[i * 4 * cout..], cout, &mut half[i * 6 * cout..], cout, cout);
        }
        for j in 0..6 {
            gradient_transform(&half[j * cout..], 6 * cout, &mut done[j * cout..], 6 * cout, cout);
        }
        for (p, plane) in planes.iter_mut().enumerate() {
            plane[tile_x * cout..][..cout].copy_from_slice(&done[p * cout..][..cout]);
        }
    }
}

/// `Aᵀ m A` of one row of tiles (row `block_row` of its block's products) plus the epilogue,
/// into the output rows `output`.
#[inline(always)]
fn output_tiles_row(args: OutputRowArgs) {
    let OutputRowArgs {
        transforms,
        products,
        geometry,
        block_row,
        row,
        output,
        conv,
        residual,
        output_size: (out_h, out_w),
    } = args;
    let cout = conv.output_channels;
    let (side, input) = (geometry.side, transforms.input());
    let plane_stride = products.len() / transforms.planes();
    let (relu, pool) = (conv.fused.relu, conv.fused.pool_output);
    let (b, tile_y) = (row / geometry.rows, row % geometry.rows);
    let chunk = cout.min(TRANSFORM_CHANNELS);
    let mut half = vec![0.0f32; input * side * chunk];
    let mut tile = vec![0.0f32; side * side * chunk];
    for tile_x in 0..geometry.columns {
        let t = block_row * geometry.columns + tile_x;
        for first in (0..cout).step_by(chunk) {
            let n = chunk.min(cout - first);
            for i in 0..input {
                let at = i * input * plane_stride + t * cout + first;
                transforms.output_transform(&products[at..], plane_stride, &mut half[i * side * n..], n, n);
            }
            for j in 0..side {
                transforms.output_transform(&half[j * n..], side * n, &mut tile[j * n..], side * n, n);
            }
            let bias = &conv.bias[first..][..n];
            for pixel in tile[..side * side * n].chunks_exact_mut(n) {
                for (value, &b) in pixel.iter_mut().zip(bias) {
                    *value += b;
                    if relu {
                        *value = value.max(0.0);
                    }
                }
            }
            if pool {
                let pooled = side / 2;
                for py in 0..pooled {
                    let xs = (0..pooled).map(|px| pooled * tile_x + px);
                    for (px, xx) in xs.enumerate() {
                        if pooled * tile_y + py >= out_h || xx >= out_w {
                            continue;
                        }
                        let dst = &mut output[(py * out_w + xx) * cout + first..][..n];
                        let at = |i: usize, j: usize| &tile[((2 * py + i) * side + 2 * px + j) * n..][..n];
                        let (p, q, r, s) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                        for (k, v) in dst.iter_mut().enumerate() {
                            *v = 0.25 * (p[k] + q[k] + r[k] + s[k]);
                        }
                    }
                }
                continue;
            }
            for i in 0..side {
                let y = side * tile_y + i;
                for j in 0..side {
                    let xx = side * tile_x + j;
                    if y >= out_h || xx >= out_w {
                        continue;
                    }
                    let dst = &mut output[(i * out_w + xx) * cout + first..][..n];
                    let value = &tile[(i * side + j) * n..][..n];
                    match residual {
                        Some(r) => {
                            let r = &r.pixel(b, y, xx)[first..][..n];
                            for ((d, &v), &r) in dst.iter_mut().zip(value).zip(r) {
                                *d = v + r;
                            }
                        }
                        None => dst.copy_from_slice(value),
                    }
                }
            }
        }
    }
}

/// A convolution's weights [C_out, C_in, k, k] and bias as values, with a batch norm on its
/// output folded in: `w' = w·s`, `b' = b·s + t` per output channel.
pub(super) fn folded(
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    output_norm: Option<ChannelAffine>,
) -> (Vec<f32>, Vec<f32>) {
    let [cout, cin, kh, kw] = weight.dims();
    let mut weight = to_vec(weight);
    let mut bias = bias.map(to_vec).unwrap_or_else(|| vec![0.0; cout]);
    if let Some(norm) = output_norm {
        for (o, filter) in weight.chunks_exact_mut(cin * kh * kw).enumerate() {
            filter.iter_mut().for_each(|w| *w *= norm.scale[o]);
            bias[o] = bias[o] * norm.scale[o] + norm.shift[o];
        }
    }
    (weight, bias)
}

/// Bytes of a block of [`patch_product_packed`]'s panel of patches (1024 deep at 64 pixels):
/// it stays in the second-level cache while every row of weights passes it.
const PATCH_BLOCK_BYTES: usize = 256 << 10;

/// `W · Pᵀ` ([C_out, pixels], row-major) of the weights `[C_out, k]` and the patches
/// `[pixels, k]` by the f32 micro-kernel: the weights read in place as its left rows (the
/// hourglasses' bottom layers stream 19–38 MB of them per call, and the `gemm` crate packed
/// them again at every call), the patches, small, packed as its right operand. Summed along `k`
/// in blocks of [`PATCH_BLOCK_BYTES`] per panel, tasks of whole groups of weight rows on every
/// core.
fn patch_product_packed(weight: &[f32], patches: &[f32], cout: usize, k: usize) -> Vec<f32> {
    let pixels = patches.len() / k.max(1);
    if pixels == 0 || cout == 0 {
        return Vec::new();
    }
    let mut packed = F32Columns::zeroed(1, k, pixels);
    let panel = packed.panel_columns();
    {
        // Pᵀ's rows are P's columns: gathered 64 values of a patch at a time, so that each
        // patch is read along its row.
        let mut rows = packed.rows_mut();
        rows.par_chunks_mut(64).enumerate().for_each(|(block, rows)| {
            let first_row = block * 64;
            for (s, first) in (0..pixels).step_by(panel).enumerate() {
                for p in first..(first + panel).min(pixels) {
                    let patch = &patches[p * k + first_row..][..rows.len()];
                    for (row, &value) in rows.iter_mut().zip(patch) {
                        row[s][p - first] = value;
                    }
                }
            }
        });
    }
    let mut product = zeroed(cout * pixels);
    // Whole groups of the micro-kernel's six rows per task, about four tasks per core.
    let groups = cout.div_ceil(6);
    let rows_per_task = 6 * groups.div_ceil(4 * rayon::current_num_threads()).max(1);
    let block = PATCH_BLOCK_BYTES / (4 * pixels.min(panel).next_multiple_of(16));
    product
        .par_chunks_mut(rows_per_task * pixels)
        .enumerate()
        .for_each(|(task, out)| {
            let weight = &weight[task * rows_per_task * k..];
            for start in (0..k).step_by(block) {
                let depth = start..(start + block).min(k);
                f32_gemm::gemm_packed_block(out, &weight[start..], k, &packed, depth, start > 0);
            }
        });
    product
}

/// `f` of a tensor's values, row-major: read in place where they are contiguous on flex (the
/// buffer may be shared, as a model's weights are), copied otherwise.
fn with_values<const D: usize, R>(x: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    match x.clone().try_into_primitive::<burn::backend::Flex>() {
        Ok(primitive) => f(&super::flex::values(&primitive)),
        Err(_) => f(&to_vec(x.clone())),
    }
}

/// A tensor's values, row-major, as f32.
pub fn to_vec<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// The interpolation points 0, ±a, ±b, ∞ of an F(4, 3): `Aᵀ` evaluates the product polynomial
/// at them, `Bᵀ` and `G` follow (Toom-Cook). Any such set gives the same convolution in exact
/// arithmetic; in floating point the transforms scale the operands' rounding differently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Points {
    a: f32,
    b: f32,
}

impl Points {
    /// 0, ±1, ±2, ∞ (Lavin and Gray's): every transform's entries are small integers or
    /// their inverses, and in f32 a layer is off by ~1e-6 of its largest output.
    pub(crate) const STANDARD: Points = Points { a: 1.0, b: 2.0 };
    /// 0, ±2/3, ±3/2, ∞: with both operands rounded to bf16, a float model of a 128- or
    /// 256-channel layer is off by half as much as with [`Points::STANDARD`] (rms 9.5e-3
    /// against 2.1e-2 of its outputs' rms; 0, ±1/2, ±2 and other sets of small fractions
    /// were worse), the set whose `Aᵀ` and `Bᵀ` entries lie closest to 1 in size. As Barabasz
    /// et al. ("Error analysis and improving the accuracy of Winograd convolution", 2020)
    /// found, the usual points are not the accurate ones.
    pub(crate) const RECIPROCAL: Points = Points {
        a: 2.0 / 3.0,
        b: 3.0 / 2.0,
    };

    /// The points a precision's products are made with.
    pub(crate) fn for_precision(precision: Precision) -> Self {
        match precision {
            Precision::F32 | Precision::F16 => Self::STANDARD,
            Precision::Bf16 => Self::RECIPROCAL,
        }
    }
}

/// The size of the Winograd tiles an f32 3×3 convolution runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiling {
    /// F(4×4, 3×3): 36 products for 16 outputs.
    F4x4,
    /// F(6×6, 3×3): 64 products for 36 outputs.
    F6x6,
}

/// Winograd's transforms: which minimal filtering algorithm a convolution runs, at which points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transforms {
    /// F(4×4, 3×3) at its points: 6×6 input tiles, 4×4 outputs, 36 products (2.25 multiplies
    /// an output).
    F4(Points),
    /// F(6×6, 3×3) at 0, ±1, ±2, ±½, ∞ (Lavin and Gray's, as NNPACK and oneDNN run it): 8×8
    /// input tiles, 6×6 outputs, 64 products (1.78 multiplies an output: 21% fewer than
    /// F(4×4) on maps that take whole tiles). Its transforms scale rounding more (entries up
    /// to 32 and 21/4), which f32 absorbs (a float model of a 256-channel layer: 1.5e-6 of the
    /// largest output against F(4×4)'s 1.0e-6) and bf16 would not.
    F6,
}

impl Transforms {
    /// Outputs per side of a tile.
    const fn output(self) -> usize {
        match self {
            Transforms::F4(_) => 4,
            Transforms::F6 => 6,
        }
    }

    /// Inputs per side of a tile: the output and the 3×3 filter's 2 more.
    const fn input(self) -> usize {
        self.output() + 2
    }

    /// The precision its products run in: bf16's at [`Points::RECIPROCAL`], else f32.
    fn products_precision(self) -> Precision {
        if self == Transforms::F4(Points::RECIPROCAL) {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// The element-wise products of a tile, each a GEMM over the channels.
    const fn planes(self) -> usize {
        self.input() * self.input()
    }

    /// Multiplies per channel pair to cover a `height × width` map with whole tiles.
    fn multiplies(self, height: usize, width: usize) -> usize {
        height.div_ceil(self.output()) * width.div_ceil(self.output()) * self.planes()
    }

    /// `Bᵀ d` for `input()` rows of `n` values `stride` apart, written as many rows
    /// `out_stride` apart.
    #[inline(always)]
    fn input_transform(self, d: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
        match self {
            Transforms::F4(points) => input_transform(points, d, stride, out, out_stride, n),
            Transforms::F6 => input_transform6(d, stride, out, out_stride, n),
        }
    }

    /// `Aᵀ m`: `input()` rows of `n` values `stride` apart → `output()` rows `out_stride` apart.
    #[inline(always)]
    fn output_transform(self, m: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
        match self {
            Transforms::F4(points) => output_transform(points, m, stride, out, out_stride, n),
            Transforms::F6 => output_transform6(m, stride, out, out_stride, n),
        }
    }
}

/// F(6, 3)'s `Bᵀ d` (points 0, 1, −1, 2, −2, ½, −½, ∞ in that order): eight rows of `n` values
/// `stride` apart → eight rows `out_stride` apart. The rows of a point pair ±p share their
/// even and odd parts: `Bᵀ` row ±p is `E_p ± O_p`.
#[inline(always)]
fn input_transform6(d: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
    let row = |k: usize| &d[k * stride..k * stride + n];
    let (d0, d1, d2, d3, d4, d5, d6, d7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
    let mut rows = out.chunks_mut(out_stride);
    let mut next = || rows.next().map(|r| &mut r[..n]).expect("eight output rows");
    let (o0, o1, o2, o3, o4, o5, o6, o7) = (next(), next(), next(), next(), next(), next(), next(), next());
    for c in 0..n {
        let (v0, v1, v2, v3, v4, v5, v6, v7) = (d0[c], d1[c], d2[c], d3[c], d4[c], d5[c], d6[c], d7[c]);
        let (even_1, odd_1) = (v2 - 4.25 * v4 + v6, v1 - 4.25 * v3 + v5);
        let (even_2, odd_2) = (0.25 * v2 - 1.25 * v4 + v6, 0.5 * v1 - 2.5 * v3 + 2.0 * v5);
        let (even_half, odd_half) = (4.0 * v2 - 5.0 * v4 + v6, 2.0 * v1 - 2.5 * v3 + 0.5 * v5);
        o0[c] = v0 - v6 + 5.25 * (v4 - v2);
        o1[c] = even_1 + odd_1;
        o2[c] = even_1 - odd_1;
        o3[c] = even_2 + odd_2;
        o4[c] = even_2 - odd_2;
        o5[c] = even_half + odd_half;
        o6[c] = even_half - odd_half;
        o7[c] = v7 - v1 + 5.25 * (v3 - v5);
    }
}

/// F(6, 3)'s `Aᵀ m`: eight rows of `n` values `stride` apart → six rows `out_stride` apart; row
/// `k` is `[0ᵏ, 1, (−1)ᵏ, 2ᵏ, (−2)ᵏ, (½)ᵏ, (−½)ᵏ, 0]`, plus `m7` in the last.
#[inline(always)]
fn output_transform6(m: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
    let row = |k: usize| &m[k * stride..k * stride + n];
    let (m0, m1, m2, m3, m4, m5, m6, m7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
    let mut rows = out.chunks_mut(out_stride);
    let mut next = || rows.next().map(|r| &mut r[..n]).expect("six output rows");
    let (o0, o1, o2, o3, o4, o5) = (next(), next(), next(), next(), next(), next());
    for c in 0..n {
        let (sum_1, diff_1) = (m1[c] + m2[c], m1[c] - m2[c]);
        let (sum_2, diff_2) = (m3[c] + m4[c], m3[c] - m4[c]);
        let (sum_half, diff_half) = (m5[c] + m6[c], m5[c] - m6[c]);
        o0[c] = m0[c] + sum_1 + sum_2 + sum_half;
        o1[c] = diff_1 + 2.0 * diff_2 + 0.5 * diff_half;
        o2[c] = sum_1 + 4.0 * sum_2 + 0.25 * sum_half;
        o3[c] = diff_1 + 8.0 * diff_2 + 0.125 * diff_half;
        o4[c] = sum_1 + 16.0 * sum_2 + 0.0625 * sum_half;
        o5[c] = diff_1 + 32.0 * diff_2 + 0.03125 * diff_half + m7[c];
    }
}

/// F(6, 3)'s `G v` of a 3-vector: rows `[1, 0, 0]`, `−2/9 [1, ±1, 1]`, `1/90 [1, ±2, 4]`,
/// `32/45 [1, ±½, ¼]`, `[0, 0, 1]`.
#[inline(always)]
fn g_apply6([v0, v1, v2]: [f64; 3]) -> [f64; 8] {
    let (outer_1, odd_1) = (v0 + v2, v1);
    let (outer_2, odd_2) = (v0 + 4.0 * v2, 2.0 * v1);
    let (outer_half, odd_half) = (v0 + 0.25 * v2, 0.5 * v1);
    const NINTHS: f64 = -2.0 / 9.0;
    const NINETIETH: f64 = 1.0 / 90.0;
    const FORTY_FIFTHS: f64 = 32.0 / 45.0;
    [
        v0,
        (outer_1 + odd_1) * NINTHS,
        (outer_1 - odd_1) * NINTHS,
        (outer_2 + odd_2) * NINETIETH,
        (outer_2 - odd_2) * NINETIETH,
        (outer_half + odd_half) * FORTY_FIFTHS,
        (outer_half - odd_half) * FORTY_FIFTHS,
        v2,
    ]
}

/// F(6, 3)'s `G g Gᵀ` of LANES 3×3 filters (row-major, lane by lane), in f64: [8 × 8] row-major.
#[inline(always)]
fn weight_transform6(g: &[[f64; LANES]; 9]) -> [[f64; LANES]; 64] {
    let mut out = [[0.0f64; LANES]; 64];
    for lane in 0..LANES {
        let mut half = [[0.0f64; 3]; 8];
        for c in 0..3 {
            for (r, value) in g_apply6([g[c][lane], g[3 + c][lane], g[6 + c][lane]])
                .into_iter()
                .enumerate()
            {
                half[r][c] = value;
            }
        }
        for (r, row) in half.iter().enumerate() {
            for (c, value) in g_apply6(*row).into_iter().enumerate() {
                out[r * 8 + c][lane] = value;
            }
        }
    }
    out
}

/// `Bᵀ d` for six rows of `n` values `stride` apart, written six rows `out_stride` apart:
/// rows `[a²b², 0, −(a²+b²), 0, 1, 0]`, `[0, ∓ab², −b², ±a, 1, 0]`, `[0, ∓ba², −a², ±b, 1, 0]`,
/// `[0, a²b², 0, −(a²+b²), 0, 1]` (for 0, ±1, ±2, ∞: 4, −5; ∓4, −4, ±1; ∓2, −1, ±2).
#[inline(always)]
fn input_transform(points: Points, d: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
    let Points { a, b } = points;
    let (a2, b2) = (a * a, b * b);
    let (a2b2, sum, ab2, ba2) = (a2 * b2, a2 + b2, a * b2, b * a2);
    let row = |k: usize| &d[k * stride..k * stride + n];
    let (d0, d1, d2, d3, d4, d5) = (row(0), row(1), row(2), row(3), row(4), row(5));
    let mut rows = out.chunks_mut(out_stride);
    let mut next = || rows.next().map(|r| &mut r[..n]).expect("six output rows");
    let (o0, o1, o2, o3, o4, o5) = (next(), next(), next(), next(), next(), next());
    if points == Points::STANDARD {
        // The usual points' integer form, rounding as f32's products always have.
        for c in 0..n {
            let (v0, v1, v2, v3, v4, v5) = (d0[c], d1[c], d2[c], d3[c], d4[c], d5[c]);
            o0[c] = 4.0 * v0 - 5.0 * v2 + v4;
            o1[c] = -4.0 * (v1 + v2) + v3 + v4;
            o2[c] = 4.0 * (v1 - v2) - v3 + v4;
            o3[c] = 2.0 * (v3 - v1) - v2 + v4;
            o4[c] = 2.0 * (v1 - v3) - v2 + v4;
            o5[c] = 4.0 * v1 - 5.0 * v3 + v5;
        }
        return;
    }
    for c in 0..n {
        let (v0, v1, v2, v3, v4, v5) = (d0[c], d1[c], d2[c], d3[c], d4[c], d5[c]);
        let (even_a, odd_a) = (v4 - b2 * v2, ab2 * v1 - a * v3);
        let (even_b, odd_b) = (v4 - a2 * v2, ba2 * v1 - b * v3);
        o0[c] = a2b2 * v0 - sum * v2 + v4;
        o1[c] = even_a - odd_a;
        o2[c] = even_a + odd_a;
        o3[c] = even_b - odd_b;
        o4[c] = even_b + odd_b;
        o5[c] = a2b2 * v1 - sum * v3 + v5;
    }
}

/// `Aᵀ m`: six rows of `n` values `stride` apart → four rows `out_stride` apart; row `k` is
/// `[0ᵏ, aᵏ, (−a)ᵏ, bᵏ, (−b)ᵏ, 0]`, plus `m5` in the last.
#[inline(always)]
fn output_transform(points: Points, m: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
    let Points { a, b } = points;
    let (a2, b2) = (a * a, b * b);
    let (a3, b3) = (a2 * a, b2 * b);
    let row = |k: usize| &m[k * stride..k * stride + n];
    let (m0, m1, m2, m3, m4, m5) = (row(0), row(1), row(2), row(3), row(4), row(5));
    let mut rows = out.chunks_mut(out_stride);
    let mut next = || rows.next().map(|r| &mut r[..n]).expect("four output rows");
    let (o0, o1, o2, o3) = (next(), next(), next(), next());
    for c in 0..n {
        let (v0, v1, v2, v3, v4, v5) = (m0[c], m1[c], m2[c], m3[c], m4[c], m5[c]);
        let (sum12, diff12, sum34, diff34) = (v1 + v2, v1 - v2, v3 + v4, v3 - v4);
        o0[c] = v0 + sum12 + sum34;
        o1[c] = a * diff12 + b * diff34;
        o2[c] = a2 * sum12 + b2 * sum34;
        o3[c] = a3 * diff12 + b3 * diff34 + v5;
    }
}

/// `A y`: four rows of `n` values `stride` apart → six rows `out_stride` apart (the transpose of
/// [`output_transform`]'s `Aᵀ`).
#[inline(always)]
fn gradient_transform(y: &[f32], stride: usize, out: &mut [f32], out_stride: usize, n: usize) {
    let row = |k: usize| &y[k * stride..k * stride + n];
    let (y0, y1, y2, y3) = (row(0), row(1), row(2), row(3));
    let mut rows = out.chunks_mut(out_stride);
    let mut next = || rows.next().map(|r| &mut r[..n]).expect("six output rows");
    let (o0, o1, o2, o3, o4, o5) = (next(), next(), next(), next(), next(), next());
    for c in 0..n {
        let (a0, a1, a2, a3) = (y0[c], y1[c], y2[c], y3[c]);
        let (even, odd) = (a0 + a2, a1 + a3);
        let (even4, odd2) = (a0 + 4.0 * a2, 2.0 * a1 + 8.0 * a3);
        o0[c] = a0;
        o1[c] = even + odd;
        o2[c] = even - odd;
        o3[c] = even4 + odd2;
        o4[c] = even4 - odd2;
        o5[c] = a3;
    }
}

/// Filters a weight transform takes at a time, lane by lane: two AVX-512 vectors of f64.
const LANES: usize = 16;

/// `Gᵀ u G` of LANES 6×6 gradients (row-major, lane by lane) → their 3×3 filters' gradients.
/// Lane by lane in straight-line code over `G`'s structure, so that the lanes are vectors and
/// the intermediate values stay in registers (as two matrix products with accumulators in
/// memory they took 4× as long).
#[inline(always)]
fn weight_gradient_transform(u: &[[f64; LANES]; 36]) -> [[f64; LANES]; 9] {
    let mut out = [[0.0f64; LANES]; 9];
    for lane in 0..LANES {
        let column = |c: usize| std::array::from_fn(|r| u[r * 6 + c][lane]);
        // Gᵀ from the left: each column of u → three values.
        let columns: [[f64; 3]; 6] = std::array::from_fn(|c| g_transposed(column(c)));
        let half: [[f64; 6]; 3] = std::array::from_fn(|k| std::array::from_fn(|c| columns[c][k]));
        // G from the right: each row of the product → three values.
        for (k, row) in half.iter().enumerate() {
            for (l, value) in g_transposed(*row).into_iter().enumerate() {
                out[k * 3 + l][lane] = value;
            }
        }
    }
    out
}

/// `Gᵀ v` of a 6-vector, `G` [6 × 3] of F(4, 3) having the rows `[1/4, 0, 0]`,
/// `[−1/6, −1/6, −1/6]`, `[−1/6, 1/6, −1/6]`, `[1/24, 1/12, 1/6]`, `[1/24, −1/12, 1/6]`,
/// `[0, 0, 1]`. By multiplications with its entries (an f64 division takes many times as long).
#[inline(always)]
fn g_transposed([v0, v1, v2, v3, v4, v5]: [f64; 6]) -> [f64; 3] {
    const SIXTH: f64 = 1.0 / 6.0;
    let (sum12, diff12, sum34, diff34) = (v1 + v2, v1 - v2, v3 + v4, v3 - v4);
    [
        0.25 * v0 - SIXTH * sum12 + (1.0 / 24.0) * sum34,
        (1.0 / 12.0) * diff34 - SIXTH * diff12,
        SIXTH * (sum34 - sum12) + v5,
    ]
}

/// `G`'s entries for [`g_apply`], from the points' f32 values (so that `G` matches the f32
/// transforms' `Aᵀ` and `Bᵀ` exactly), in f64.
#[derive(Clone, Copy)]
struct FilterTransform {
    a: f64,
    b: f64,
    a2: f64,
    b2: f64,
    /// 1/(a²b²), 1/(2a²(a² − b²)), 1/(2b²(b² − a²)): multiplied by, as an f64 division takes
    /// many times as long as a multiplication.
    inverse_a2b2: f64,
    inverse_a: f64,
    inverse_b: f64,
}

impl FilterTransform {
    fn new(points: Points) -> Self {
        let (a, b) = (f64::from(points.a), f64::from(points.b));
        let (a2, b2) = (a * a, b * b);
        Self {
            a,
            b,
            a2,
            b2,
            inverse_a2b2: 1.0 / (a2 * b2),
            inverse_a: 1.0 / (2.0 * a2 * (a2 - b2)),
            inverse_b: 1.0 / (2.0 * b2 * (b2 - a2)),
        }
    }
}

/// `G v` of a 3-vector: rows `[1/(a²b²), 0, 0]`, `[1, ±a, a²] / (2a²(a² − b²))`,
/// `[1, ±b, b²] / (2b²(b² − a²))`, `[0, 0, 1]` (for 0, ±1, ±2, ∞ those of [`g_transposed`]).
#[inline(always)]
fn g_apply(g: &FilterTransform, [v0, v1, v2]: [f64; 3]) -> [f64; 6] {
    let (outer_a, outer_b) = (v0 + g.a2 * v2, v0 + g.b2 * v2);
    let (odd_a, odd_b) = (g.a * v1, g.b * v1);
    [
        v0 * g.inverse_a2b2,
        (outer_a + odd_a) * g.inverse_a,
        (outer_a - odd_a) * g.inverse_a,
        (outer_b + odd_b) * g.inverse_b,
        (outer_b - odd_b) * g.inverse_b,
        v2,
    ]
}

/// `G g Gᵀ` of LANES 3×3 filters (row-major, lane by lane), in f64: [6 × 6] row-major. Lane
/// by lane in straight-line code, as [`weight_gradient_transform`].
#[inline(always)]
fn weight_transform(points: Points, g: &[[f64; LANES]; 9]) -> [[f64; LANES]; 36] {
    let transform = FilterTransform::new(points);
    let mut out = [[0.0f64; LANES]; 36];
    for lane in 0..LANES {
        // G from the left: each column of g → six values.
        let mut half = [[0.0f64; 3]; 6];
        for c in 0..3 {
            for (r, value) in g_apply(&transform, [g[c][lane], g[3 + c][lane], g[6 + c][lane]])
                .into_iter()
                .enumerate()
            {
                half[r][c] = value;
            }
        }
        // Gᵀ from the right: each row → six values.
        for (r, row) in half.iter().enumerate() {
            for (c, value) in g_apply(&transform, *row).into_iter().enumerate() {
                out[r * 6 + c][lane] = value;
            }
        }
    }
    out
}

/// Nearest-neighbour ×2 upsampling of channels-last maps.
pub fn upsample2(x: &Nhwc<'_>) -> Nhwc<'static> {
    let (h, w, c) = (2 * x.height, 2 * x.width, x.channels);
    let mut data = Vec::with_capacity(x.batch * h * w * c);
    for b in 0..x.batch {
        for y in 0..h {
            for xx in 0..w {
                data.extend_from_slice(x.pixel(b, y / 2, xx / 2));
            }
        }
    }
    Nhwc {
        data: data.into(),
        batch: x.batch,
        height: h,
        width: w,
        channels: c,
    }
}

/// 2×2 average pooling, stride 2, of channels-last maps (odd edges dropped, as torch's).
pub fn avg_pool2(x: &Nhwc<'_>) -> Nhwc<'static> {
    let (h, w, c) = (x.height / 2, x.width / 2, x.channels);
    let mut data = zeroed(x.batch * h * w * c);
    for (i, dst) in data.chunks_exact_mut(c.max(1)).enumerate() {
        let (b, y, xx) = (i / (h * w), i / w % h, i % w);
        let (p, q, r, s) = (
            x.pixel(b, 2 * y, 2 * xx),
            x.pixel(b, 2 * y, 2 * xx + 1),
            x.pixel(b, 2 * y + 1, 2 * xx),
            x.pixel(b, 2 * y + 1, 2 * xx + 1),
        );
        for (k, v) in dst.iter_mut().enumerate() {
            *v = 0.25 * (p[k] + q[k] + r[k] + s[k]);
        }
    }
    Nhwc {
        data: data.into(),
        batch: x.batch,
        height: h,
        width: w,
        channels: c,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;
    use burn::tensor::module::{avg_pool2d, conv2d};
    use burn::tensor::ops::{AvgPoolOptions, ConvOptions};

    use super::*;
    use crate::test_support::uniform;
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

    /// Nearest-neighbour ×2 upsampling by burn (the networks' `upsample2`).
    fn upsample_tensor(x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]),
        )
    }

    /// The block as burn computes it from the unfused parts.
    fn reference(
        x: &Tensor<4>,
        weight: &Tensor<4>,
        bias: &Tensor<1>,
        fused: &Fused,
        out_norm: Option<&ChannelAffine>,
        residual: Option<&Tensor<4>>,
    ) -> Tensor<4> {
        let affine = |t: Tensor<4>, a: &ChannelAffine| {
            let c = a.scale.len();
            let scale = Tensor::<1>::from_data(TensorData::new(a.scale.clone(), [c]), &Device::flex());
            let shift = Tensor::<1>::from_data(TensorData::new(a.shift.clone(), [c]), &Device::flex());
            t * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
        };
        let mut input = x.clone();
        if let Some(a) = &fused.input_affine {
            input = relu(affine(input, a));
        }
        if fused.upsample_input {
            input = upsample_tensor(input);
        }
        let mut y = conv2d(
            input,
            weight.clone(),
            Some(bias.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        if let Some(norm) = out_norm {
            y = affine(y, norm);
        }
        if fused.relu {
            y = relu(y);
        }
        if let Some(r) = residual {
            y = y + r.clone();
        }
        if fused.pool_output {
            y = avg_pool2d(y, AvgPoolOptions::new([2, 2]));
        }
        y
    }

    fn random_affine(c: usize) -> ChannelAffine {
        let v = |lo: f64, hi: f64| to_vec(Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &Device::flex()));
        ChannelAffine::batch_norm(&v(0.5, 1.5), &v(-0.5, 0.5), &v(-0.2, 0.2), &v(0.5, 2.0), 1e-5)
    }

    /// Largest |ours − burn| over the largest |burn|.
    fn relative_error(ours: Tensor<4>, expected: Tensor<4>) -> f32 {
        let (a, b) = (to_vec(ours), to_vec(expected));
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[allow(clippy::too_many_arguments)]
    fn check(batch: usize, cin: usize, cout: usize, h: usize, w: usize, fused: Fused, out_norm: bool, residual: bool) {
        let x = uniform([batch, cin, h, w], 1.0);
        let k = (1.0 / (9.0 * cin as f64)).sqrt();
        let weight = uniform([cout, cin, 3, 3], k);
        let bias = uniform([cout], 0.1);
        let norm = out_norm.then(|| random_affine(cout));
        let scale = if fused.upsample_input { 2 } else { 1 };
        let res = residual.then(|| uniform([batch, cout, h * scale, w * scale], 1.0));
        let expected = reference(&x, &weight, &bias, &fused, norm.as_ref(), res.as_ref());
        let conv = FusedConv3x3::new(weight, Some(bias), norm, fused.clone());
        let res_nhwc = res.map(Nhwc::from_tensor);
        let x = Nhwc::from_tensor(x);
        // Training's F(4×4, 3×3), F(6×6, 3×3) (which inference takes on larger maps), and
        // inference's choice.
        let outputs = [
            conv.forward(&x, res_nhwc.as_ref()),
            conv.forward_tiled(Tiling::F6x6, &x, res_nhwc.as_ref()),
            conv.forward_at(Precision::F32, &x, res_nhwc.as_ref()),
        ];
        for (form, ours) in ["F(4×4)", "F(6×6)", "forward_at"].into_iter().zip(outputs) {
            let ours = ours.into_tensor(&Device::flex());
            assert_eq!(ours.dims(), expected.dims(), "{fused:?}");
            let error = relative_error(ours, expected.clone());
            // In f32 the transforms scale values (F(4×4): up to 8 in Aᵀ and 5 in Bᵀ; F(6×6): 32
            // and 21/4), so the rounding error grows with them and with √C_in: up to 2.1e-5 of
            // the largest output was seen at 512 input channels.
            assert!(
                error < 6e-5,
                "{form} {batch}×{cin}→{cout} {h}×{w} {fused:?}: relative error {error}"
            );
        }
    }

    #[test]
    fn blocks_of_rows_are_whole_turns_of_the_threads_and_even() {
        // The bottleneck's 16 rows at up to 7 a block on 2 threads: 6, 6, 4 rather than 7, 7, 2.
        assert_eq!(even_blocks(16, 7, 2), 6);
        assert_eq!(even_blocks(16, 8, 2), 8);
        assert_eq!(even_blocks(22, 2, 2), 2);
        assert_eq!(even_blocks(43, 2, 2), 2);
        // Fewer rows than a block holds: one block.
        assert!(even_blocks(16, 100, 2) >= 16);
        // Blocks smaller than a turn of the threads, or one thread: as many as fit.
        assert_eq!(even_blocks(16, 1, 2), 1);
        assert_eq!(even_blocks(16, 7, 1), 6);
        for (all, most, threads) in [(16, 7, 2), (100, 9, 4), (5, 3, 2), (1, 1, 8), (13, 4, 3)] {
            let rows = even_blocks(all, most, threads);
            assert!(rows >= 1 && rows <= most.max(1), "{all} rows, at most {most}: {rows}");
        }
    }

    /// Each point set's three transforms together compute a tile's 3×3 correlation:
    /// `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for a 6×6 patch `d` and a filter `g`, in f32.
    #[test]
    fn every_point_set_computes_the_correlation_of_a_tile() {
        let value = |at: usize| ((at * 29 + 7) % 31) as f32 / 9.0 - 1.7;
        let patch: Vec<f32> = (0..36).map(value).collect();
        let filter: Vec<f32> = (0..9).map(|at| value(at + 40)).collect();
        for points in [Points::STANDARD, Points::RECIPROCAL] {
            let mut taps = [[0.0f64; LANES]; 9];
            taps.iter_mut().zip(&filter).for_each(|(tap, &v)| tap[0] = f64::from(v));
            let u = weight_transform(points, &taps);
            // Bᵀ d B: along the rows, then along the columns (as `input_tiles_row` does).
            let (mut half, mut v) = (vec![0.0f32; 36], vec![0.0f32; 36]);
            for i in 0..6 {
                input_transform(points, &patch[6 * i..], 1, &mut half[6 * i..], 1, 1);
            }
            for j in 0..6 {
                input_transform(points, &half[j..], 6, &mut v[j..], 6, 1);
            }
            let m: Vec<f32> = (0..36).map(|p| u[p][0] as f32 * v[p]).collect();
            let (mut rows, mut y) = (vec![0.0f32; 24], vec![0.0f32; 16]);
            for i in 0..6 {
                output_transform(points, &m[6 * i..], 1, &mut rows[4 * i..], 1, 1);
            }
            for j in 0..4 {
                output_transform(points, &rows[j..], 4, &mut y[j..], 4, 1);
            }
            for (i, j) in (0..4).flat_map(|i| (0..4).map(move |j| (i, j))) {
                let expected: f32 = (0..9).map(|t| filter[t] * patch[(i + t / 3) * 6 + j + t % 3]).sum();
                assert!(
                    (y[i * 4 + j] - expected).abs() < 1e-4 * expected.abs().max(1.0),
                    "{points:?} ({i}, {j}): {} against {expected}",
                    y[i * 4 + j]
                );
            }
        }
    }

    /// F(6×6, 3×3)'s transforms compute an 8×8 patch's 6×6 correlation, through
    /// [`Transforms`]'s row transforms as the tile rows run them.
    #[test]
    fn f6_transforms_compute_the_correlation_of_a_tile() {
        let value = |at: usize| ((at * 29 + 7) % 31) as f32 / 9.0 - 1.7;
        let patch: Vec<f32> = (0..64).map(value).collect();
        let filter: Vec<f32> = (0..9).map(|at| value(at + 70)).collect();
        let mut taps = [[0.0f64; LANES]; 9];
        taps.iter_mut().zip(&filter).for_each(|(tap, &v)| tap[0] = f64::from(v));
        let u = weight_transform6(&taps);
        let (mut half, mut v) = (vec![0.0f32; 64], vec![0.0f32; 64]);
        for i in 0..8 {
            Transforms::F6.input_transform(&patch[8 * i..], 1, &mut half[8 * i..], 1, 1);
        }
        for j in 0..8 {
            Transforms::F6.input_transform(&half[j..], 8, &mut v[j..], 8, 1);
        }
        let m: Vec<f32> = (0..64).map(|p| u[p][0] as f32 * v[p]).collect();
        let (mut rows, mut y) = (vec![0.0f32; 48], vec![0.0f32; 36]);
        for i in 0..8 {
            Transforms::F6.output_transform(&m[8 * i..], 1, &mut rows[6 * i..], 1, 1);
        }
        for j in 0..6 {
            Transforms::F6.output_transform(&rows[j..], 6, &mut y[j..], 6, 1);
        }
        for (i, j) in (0..6).flat_map(|i| (0..6).map(move |j| (i, j))) {
            let expected: f32 = (0..9).map(|t| filter[t] * patch[(i + t / 3) * 8 + j + t % 3]).sum();
            assert!(
                (y[i * 6 + j] - expected).abs() < 1e-4 * expected.abs().max(1.0),
                "({i}, {j}): {} against {expected}",
                y[i * 6 + j]
            );
        }
    }

    /// The weight transform and its gradient's against `G g Gᵀ` and `Gᵀ u G` written as matrix
    /// products, on filters of every lane.
    #[test]
    fn weight_transforms_are_g_g_gt_and_its_transpose() {
        const G: [[f64; 3]; 6] = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let value = |lane: usize, at: usize| ((lane * 37 + at * 11) % 23) as f64 / 7.0 - 1.5;
        let mut g = [[0.0f64; LANES]; 9];
        let mut u = [[0.0f64; LANES]; 36];
        for lane in 0..LANES {
            g.iter_mut()
                .enumerate()
                .for_each(|(at, tap)| tap[lane] = value(lane, at));
            u.iter_mut()
                .enumerate()
                .for_each(|(at, entry)| entry[lane] = value(lane, at + 5));
        }
        let (transformed, gradient) = (weight_transform(Points::STANDARD, &g), weight_gradient_transform(&u));
        for lane in 0..LANES {
            for (r, c) in (0..6).flat_map(|r| (0..6).map(move |c| (r, c))) {
                let expected: f64 = (0..3)
                    .flat_map(|k| (0..3).map(move |l| (k, l)))
                    .map(|(k, l)| G[r][k] * g[k * 3 + l][lane] * G[c][l])
                    .sum();
                assert!((transformed[r * 6 + c][lane] - expected).abs() < 1e-12, "G g Gᵀ");
            }
            for (k, l) in (0..3).flat_map(|k| (0..3).map(move |l| (k, l))) {
                let expected: f64 = (0..6)
                    .flat_map(|r| (0..6).map(move |c| (r, c)))
                    .map(|(r, c)| G[r][k] * u[r * 6 + c][lane] * G[c][l])
                    .sum();
                assert!((gradient[k * 3 + l][lane] - expected).abs() < 1e-12, "Gᵀ u G");
            }
        }
    }

    #[test]
    fn winograd_matches_burns_convolution_over_shapes() {
        // Odd and even sizes, sizes not a multiple of either tile, batch > 1, 3 to 512 channels;
        // a map where inference takes F(6×6) itself.
        for &(batch, cin, cout, h, w) in &[
            (1, 3, 8, 16, 16),
            (1, 16, 24, 130, 128),
            (2, 24, 16, 37, 26),
            (2, 16, 12, 17, 23),
            (1, 64, 64, 32, 30),
            (2, 44, 128, 21, 18),
            (1, 512, 256, 16, 16),
            (1, 256, 512, 19, 16),
        ] {
            check(batch, cin, cout, h, w, Fused::default(), false, false);
        }
    }

    /// bf16 products (by the instruction where the CPU has it, else the portable loop) against
    /// burn's f32 convolution: each operand rounded to 8 bits of mantissa (a relative 2⁻⁹), then
    /// grown by the transforms; with [`Points::RECIPROCAL`] 1.5e-2–1.7e-2 of the largest output
    /// here (with the standard points, which bf16 ran with before, 5.2e-2–7.2e-2); and a block
    /// that does not tolerate reduced precision keeps f32.
    #[test]
    fn bf16_products_stay_within_bf16_rounding() {
        for &(cin, cout, h, w) in &[(64, 64, 32, 30), (256, 256, 16, 16), (44, 128, 21, 18)] {
            let x = uniform([1, cin, h, w], 1.0);
            let weight = uniform([cout, cin, 3, 3], (1.0 / (9.0 * cin as f64)).sqrt());
            let bias = uniform([cout], 0.1);
            let expected = reference(&x, &weight, &bias, &Fused::default(), None, None);
            let x = Nhwc::from_tensor(x);
            let error = |tolerant: bool| {
                let fused = Fused {
                    tolerates_reduced_precision: tolerant,
                    ..Fused::default()
                };
                let conv = FusedConv3x3::new(weight.clone(), Some(bias.clone()), None, fused);
                let y = conv.forward_at(Precision::Bf16, &x, None).into_tensor(&Device::flex());
                relative_error(y, expected.clone())
            };
            let (bf16_error, f32_error) = (error(true), error(false));
            eprintln!("{cin}→{cout} {h}×{w}: relative error bf16 {bf16_error:.1e}, f32 {f32_error:.1e}");
            assert!(
                bf16_error < 3e-2 && bf16_error > 1e-3,
                "{cin}→{cout} {h}×{w}: bf16 relative error {bf16_error}"
            );
            assert!(
                f32_error < 6e-5,
                "{cin}→{cout} {h}×{w}: f32 kept, relative error {f32_error}"
            );
        }
    }

    #[test]
    fn the_direct_path_for_small_maps_matches_too() {
        for &(batch, cin, cout, h, w) in &[(1, 1024, 64, 4, 4), (2, 8, 8, 2, 3), (1, 6, 5, 7, 9)] {
            check(batch, cin, cout, h, w, Fused::default(), true, false);
            let up = Fused {
                upsample_input: true,
                relu: true,
                ..Fused::default()
            };
            check(batch, cin, cout, h, w, up, true, false);
        }
    }

    #[test]
    fn fused_blocks_match_their_parts() {
        let res_first = Fused {
            input_affine: Some(random_affine(32)),
            relu: true,
            ..Fused::default()
        };
        check(2, 32, 32, 24, 20, res_first, true, false);
        check(1, 32, 32, 24, 20, Fused::default(), false, true);
        let up = Fused {
            upsample_input: true,
            relu: true,
            ..Fused::default()
        };
        check(1, 48, 24, 11, 13, up, true, false);
        let down = Fused {
            relu: true,
            pool_output: true,
            ..Fused::default()
        };
        check(2, 20, 40, 33, 30, down.clone(), true, false);
        check(1, 20, 40, 7, 9, down.clone(), true, false);
        // Channels beyond one of the transforms' chunks (TRANSFORM_CHANNELS), and not a
        // multiple of it.
        let wide_first = Fused {
            input_affine: Some(random_affine(100)),
            relu: true,
            ..Fused::default()
        };
        check(1, 100, 150, 18, 17, wide_first, true, false);
        check(1, 100, 150, 18, 17, Fused::default(), false, true);
        check(1, 100, 150, 18, 17, down, true, false);
    }

    /// The planes an upsampled input's products skip are those its input transform leaves
    /// zero in every tile (and only those); other inputs keep every plane.
    #[test]
    fn an_upsampled_input_leaves_the_point_minus_one_planes_zero() {
        let (cin, h, w) = (8, 7, 9);
        let x = Nhwc::from_tensor(uniform([1, cin, h, w], 1.0));
        let affine = random_affine(cin);
        for transforms in [Transforms::F4(Points::STANDARD), Transforms::F6] {
            let geometry = Tiles::new(transforms, 2 * h, 2 * w);
            let tiles = geometry.rows * geometry.columns;
            let mut transformed = vec![f32::NAN; transforms.planes() * tiles * cin];
            let rows = (0, geometry.rows);
            transform_input_rows(transforms, &x, &geometry, Some(&affine), true, rows, &mut transformed);
            let kept = kept_planes(transforms, true);
            assert_eq!(kept.len(), (transforms.input() - 1).pow(2), "{transforms:?}");
            for (p, plane) in transformed.chunks(tiles * cin).enumerate() {
                let zero = plane.iter().all(|&v| v == 0.0);
                assert_eq!(zero, !kept.contains(&p), "{transforms:?}: plane {p}");
            }
            assert_eq!(kept_planes(transforms, false).len(), transforms.planes());
        }
        let bf16 = Transforms::F4(Points::RECIPROCAL);
        assert_eq!(kept_planes(bf16, true).len(), bf16.planes(), "no point −1 there");
    }

    #[test]
    fn channels_last_round_trips_and_concatenates() {
        let a = uniform([2, 3, 5, 4], 1.0);
        let b = uniform([2, 2, 5, 4], 1.0);
        let back = Nhwc::from_tensor(a.clone()).into_tensor(&Device::flex());
        assert_eq!(to_vec(back), to_vec(a.clone()));
        let cat = Nhwc::from_tensor(a.clone())
            .cat(&Nhwc::from_tensor(b.clone()))
            .into_tensor(&Device::flex());
        assert_eq!(to_vec(cat), to_vec(Tensor::cat(vec![a, b], 1)));
    }
}
