//! The building blocks FOMM and TPSMM share (each has them in its `modules/util.py`): the
//! Hourglass encoder/decoder and its down/up/same/residual blocks, and the anti-aliased
//! downsampling in front of the keypoint detector and the dense motion network.
//!
//! The two families differ only in the blocks' normalisation ([`BlockNorm`]): FOMM's batch norm
//! ([`BatchNorm2d`], the default), TPSMM's instance norm ([`InstanceNorm2d`]), which depends on
//! the data and so is not folded into the inference form: it runs after the prepared
//! convolution. Batch norms use
//! batch statistics on an autodiff device (training) and the running statistics otherwise
//! (inference), like torch's train/eval modes.
//!
//! A block also has an inference form ([`InferenceForm`]): made once from weights that no longer
//! change, it runs the block as one prepared convolution with its batch norms, ReLU, resampling
//! and residual folded in (the kernels crate's [`InferenceConv`]), where that serves the device;
//! the block's `forward` takes it first and is otherwise the block as trained.

use burn::module::{Module, Param, RunningState};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, batch_norm, batch_norm_train, conv2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels::{
    ChannelAffine, Fused, InferenceConv, batch_norm_relu_pool_train, batch_norm_relu_train, cat_channels, convolve,
    convolve_concatenated, instance_norm_relu, instance_norm_relu_pool,
};

/// A network's inference form: its weights prepared once for the fast kernels, with what
/// surrounds each convolution folded in. For weights that no longer change (a model opened for
/// animation); where no kernel serves (another device, autodiff) the network is left as it is
/// and computes as trained. A network's form is its parts' forms: adding a block means
/// implementing this for it and calling it from its parent.
pub trait InferenceForm: Sized {
    /// The network with its inference form made.
    fn into_inference_form(self) -> Self;
}

impl<T: InferenceForm> InferenceForm for Vec<T> {
    fn into_inference_form(self) -> Self {
        self.into_iter().map(T::into_inference_form).collect()
    }
}

impl<T: InferenceForm> InferenceForm for Option<T> {
    fn into_inference_form(self) -> Self {
        self.map(T::into_inference_form)
    }
}

/// The normalisation inside a block: `norm(conv(x))` and its fused tails.
pub trait BlockNorm: Module + burn::module::ModuleDisplay {
    /// Whether the norm is a fixed per-channel affine map at inference ([`BlockNorm::folded`]
    /// gives it), folded with what follows it into the block's prepared convolution; otherwise
    /// the prepared convolution is the convolution alone and the norm runs after it.
    const FOLDS: bool;

    /// The norm of `features` channels, as torch initialises it (weight 1, bias 0).
    fn new(features: usize, device: &Device) -> Self;

    /// [b, c, h, w] → [b, c, h, w]
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;

    /// `relu(self.forward(x))`, what every block applies.
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.forward(x))
    }

    /// `avg_pool2d(relu(self.forward(x)), 2)`, a `DownBlock2d`'s tail.
    fn forward_relu_pool(&self, x: Tensor<4>) -> Tensor<4> {
        avg_pool2d(self.forward_relu(x), AvgPoolOptions::new([2, 2]))
    }

    /// The norm as a fixed per-channel `scale · x + shift` at inference, for folding into the
    /// convolution beside it; `None` where it depends on the data (an instance norm).
    fn folded(&self) -> Option<ChannelAffine>;
}

/// A block's prepared form applied to `x`, where it has one that serves `x`'s device.
fn prepared(inference: Option<&InferenceConv>, x: &Tensor<4>) -> Option<Tensor<4>> {
    inference?.forward(x, None)
}

/// A `kernel × kernel` convolution with symmetric zero padding, as torch's `nn.Conv2d`.
pub fn conv(input: usize, output: usize, kernel: usize, padding: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([input, output], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .init(device)
}

/// Two convolutions of the same input as one, their outputs stacked along channels (`first`'s,
/// then `second`'s): a network's heads in its inference form on a GPU, where each convolution is
/// one launch of the direct kernel over the same input (one pass over it instead of two, one
/// launch). `None` off a GPU, and where the two differ in anything but their output channels.
pub fn stacked_heads(first: &Conv2d, second: &Conv2d) -> Option<Conv2d> {
    let device = first.weight.device();
    let alike = first.kernel_size == second.kernel_size
        && first.stride == second.stride
        && first.dilation == second.dilation
        && first.groups == second.groups
        && first.padding == second.padding
        && first.weight.dims()[1] == second.weight.dims()[1];
    if !alike || device.is_autodiff() || !crate::kernels::gpu::is_cube(&device) {
        return None;
    }
    let bias = |conv: &Conv2d| match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([conv.weight.dims()[0]], &device),
    };
    let mut stacked = first.clone();
    stacked.weight = Param::from_tensor(Tensor::cat(vec![first.weight.val(), second.weight.val()], 0));
    stacked.bias = Some(Param::from_tensor(Tensor::cat(vec![bias(first), bias(second)], 0)));
    Some(stacked)
}

/// `stacked` (from [`stacked_heads`]) applied to an hourglass's output given as its parts
/// ([`Hourglass::forward_parts`], read in place): both heads' outputs, stacked along channels;
/// `None` where the input is on another device than the stacked weights.
pub fn stacked_forward(stacked: Option<&Conv2d>, (head, tail): &(Tensor<4>, Option<Tensor<4>>)) -> Option<Tensor<4>> {
    let stacked = stacked?;
    (stacked.weight.device() == head.device()).then(|| match tail {
        Some(tail) => convolve_concatenated(stacked, head.clone(), tail.clone()),
        None => convolve(stacked, head.clone()),
    })
}

/// An hourglass's output from its parts ([`Hourglass::forward_parts`]): their concatenation.
pub fn joined((head, tail): (Tensor<4>, Option<Tensor<4>>)) -> Tensor<4> {
    match tail {
        Some(tail) => cat_channels(vec![head, tail]),
        None => head,
    }
}

/// FOMM's `SynchronizedBatchNorm2d(affine=True)` on one device: torch's parameter names, and the
/// running variance updated with the *unbiased* batch variance, as torch does (burn's own
/// `BatchNorm` uses the biased one).
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
}

impl BatchNorm2d {
    pub const EPSILON: f64 = 1e-5;
    const MOMENTUM: f64 = 0.1;

    /// The eval-mode batch norm `γ (x − μ) / √(σ² + ε) + β` as a per-channel `scale · x + shift`,
    /// for folding into the convolution beside it.
    pub fn folded(&self) -> ChannelAffine {
        let values =
            |t: Tensor<1>| -> Vec<f32> { t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default() };
        ChannelAffine::batch_norm(
            &values(self.weight.val()),
            &values(self.bias.val()),
            &values(self.running_mean.value()),
            &values(self.running_var.value()),
            Self::EPSILON,
        )
    }

    pub fn new(features: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([features], device)),
            bias: Param::from_tensor(Tensor::zeros([features], device)),
            running_mean: RunningState::new(Tensor::zeros([features], device)),
            running_var: RunningState::new(Tensor::ones([features], device)),
        }
    }

    /// [b, c, h, w] → [b, c, h, w]; training mode on an autodiff device.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        if !device.is_autodiff() {
            return batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                Self::EPSILON,
            );
        }
        let result = batch_norm_train(x, self.weight.val(), self.bias.val(), Self::EPSILON);
        self.update_running_statistics(result.mean, result.variance, count(&result.output));
        result.output
    }
}

impl BlockNorm for BatchNorm2d {
    const FOLDS: bool = true;

    fn new(features: usize, device: &Device) -> Self {
        BatchNorm2d::new(features, device)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        BatchNorm2d::forward(self, x)
    }

    /// One operation in flex training.
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        match batch_norm_relu_train(&x, &self.weight.val(), &self.bias.val(), Self::EPSILON) {
            Some((output, mean, variance)) => {
                self.update_running_statistics(mean, variance, count(&output));
                output
            }
            None => relu(BatchNorm2d::forward(self, x)),
        }
    }

    /// One operation in flex training.
    fn forward_relu_pool(&self, x: Tensor<4>) -> Tensor<4> {
        let count = count(&x);
        match batch_norm_relu_pool_train(&x, &self.weight.val(), &self.bias.val(), Self::EPSILON) {
            Some((output, mean, variance)) => {
                self.update_running_statistics(mean, variance, count);
                output
            }
            None => avg_pool2d(relu(BatchNorm2d::forward(self, x)), AvgPoolOptions::new([2, 2])),
        }
    }

    fn folded(&self) -> Option<ChannelAffine> {
        Some(BatchNorm2d::folded(self))
    }
}

impl BatchNorm2d {
    /// torch's momentum update, with the unbiased variance of `count` values per channel.
    fn update_running_statistics(&self, batch_mean: Tensor<1>, batch_variance: Tensor<1>, count: f64) {
        let device = batch_mean.device();
        let unbiased = batch_variance * (count / (count - 1.0).max(1.0));
        let momentum = Self::MOMENTUM;
        let old_mean = self.running_mean.value_sync().to_device(&device);
        let old_var = self.running_var.value_sync().to_device(&device);
        let mean = old_mean.clone() * (1.0 - momentum) + batch_mean * momentum;
        let var = old_var.clone() * (1.0 - momentum) + unbiased * momentum;
        // A non-finite batch (a step the trainer will skip) must not poison the statistics
        // that inference uses.
        let keep = |new: Tensor<1>, old: Tensor<1>| {
            let bad = new.clone().is_finite().bool_not();
            new.mask_where(bad, old).detach()
        };
        self.running_mean.update(keep(mean, old_mean));
        self.running_var.update(keep(var, old_var));
    }
}

/// Values per channel of an NCHW batch: b · h · w.
fn count(x: &Tensor<4>) -> f64 {
    let [b, _, h, w] = x.dims();
    (b * h * w) as f64
}

/// Nearest-neighbour ×2 upsampling (`F.interpolate(x, scale_factor=2)`).
pub fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]),
    )
}

/// Bilinear resize with `align_corners=False`, torch's default since 1.3.
pub fn resize_bilinear(x: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([height, width]),
    )
}

/// torch's `InstanceNorm2d(affine=True)`, TPSMM's norm: each image's channel normalised by its
/// own mean and (biased) variance over the pixels, `γ (x − μ) / √(σ² + ε) + β`, in training
/// and inference alike (no running statistics).
#[derive(Module, Debug)]
pub struct InstanceNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl InstanceNorm2d {
    pub const EPSILON: f64 = 1e-5;
}

impl BlockNorm for InstanceNorm2d {
    const FOLDS: bool = false;

    fn new(features: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([features], device)),
            bias: Param::from_tensor(Tensor::zeros([features], device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let pixels = x.reshape([b, c, h * w]);
        let mean = pixels.clone().mean_dim(2);
        let centred = pixels - mean;
        let variance = centred.clone().square().mean_dim(2);
        let normalised = centred / (variance + Self::EPSILON).sqrt();
        let scale = self.weight.val().reshape([1, c, 1]);
        let shift = self.bias.val().reshape([1, c, 1]);
        (normalised * scale + shift).reshape([b, c, h, w])
    }

    /// One operation on flex (training and inference).
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        instance_norm_relu(&x, &self.weight.val(), &self.bias.val(), Self::EPSILON)
            .unwrap_or_else(|| relu(BlockNorm::forward(self, x)))
    }

    /// One operation on flex (training and inference).
    fn forward_relu_pool(&self, x: Tensor<4>) -> Tensor<4> {
        instance_norm_relu_pool(&x, &self.weight.val(), &self.bias.val(), Self::EPSILON)
            .unwrap_or_else(|| avg_pool2d(relu(BlockNorm::forward(self, x)), AvgPoolOptions::new([2, 2])))
    }

    fn folded(&self) -> Option<ChannelAffine> {
        None
    }
}

/// `source` [b, c, h, w] sampled by each of `grids` [b, n, h, w, 2] with `sample` (a
/// `grid_sample`): the source warped by each sparse motion of a dense motion network.
/// → [b, n, c, h, w]
pub fn warp_by_each(source: &Tensor<4>, grids: &Tensor<5>, sample: fn(Tensor<4>, Tensor<4>) -> Tensor<4>) -> Tensor<5> {
    let [b, c, h, w] = source.dims();
    let [_, n, _, _, _] = grids.dims();
    let repeated = source
        .clone()
        .unsqueeze_dim::<5>(1)
        .repeat_dim(1, n)
        .reshape([b * n, c, h, w]);
    let grid = grids.clone().reshape([b * n, h, w, 2]);
    sample(repeated, grid).reshape([b, n, c, h, w])
}

/// Residual block, preserves resolution: `x + conv2(relu(norm2(conv1(relu(norm1(x))))))`.
#[derive(Module, Debug)]
pub struct ResBlock2d<N: BlockNorm = BatchNorm2d> {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub norm1: N,
    pub norm2: N,
    /// The inference form: norm1 + ReLU applied as conv1 reads x, norm2 and its ReLU folded into
    /// conv1, and conv2 adding x as it writes; for a norm that does not fold, the two
    /// convolutions alone (conv2 still adding x) with the norms between them.
    #[module(skip)]
    pub inference: Option<(InferenceConv, InferenceConv)>,
}

impl<N: BlockNorm> ResBlock2d<N> {
    pub fn new(features: usize, kernel: usize, padding: usize, device: &Device) -> Self {
        Self {
            conv1: conv(features, features, kernel, padding, device),
            conv2: conv(features, features, kernel, padding, device),
            norm1: N::new(features, device),
            norm2: N::new(features, device),
            inference: None,
        }
    }

    /// [b, c, h, w] → [b, c, h, w]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some((first, second)) = &self.inference {
            let y = if N::FOLDS {
                first.forward(&x, None).and_then(|out| second.forward(&out, Some(&x)))
            } else {
                first
                    .forward(&self.norm1.forward_relu(x.clone()), None)
                    .and_then(|out| second.forward(&self.norm2.forward_relu(out), Some(&x)))
            };
            if let Some(y) = y {
                return y;
            }
        }
        let out = convolve(&self.conv1, self.norm1.forward_relu(x.clone()));
        let out = convolve(&self.conv2, self.norm2.forward_relu(out));
        out + x
    }
}

impl<N: BlockNorm> InferenceForm for ResBlock2d<N> {
    fn into_inference_form(mut self) -> Self {
        // A residual branch: its products may run in the reduced precision chosen, if any.
        let branch = Fused {
            tolerates_reduced_precision: true,
            ..Fused::default()
        };
        let first = match (self.norm1.folded(), self.norm2.folded()) {
            (Some(norm1), Some(norm2)) => {
                let surroundings = Fused {
                    input_affine: Some(norm1),
                    relu: true,
                    ..branch.clone()
                };
                InferenceConv::new(&self.conv1, Some(norm2), surroundings)
            }
            _ => InferenceConv::new(&self.conv1, None, branch.clone()),
        };
        let second = InferenceConv::new(&self.conv2, None, branch);
        self.inference = first.zip(second);
        self
    }
}

/// Decoder block: nearest ×2 upsampling, conv, norm, ReLU.
#[derive(Module, Debug)]
pub struct UpBlock2d<N: BlockNorm = BatchNorm2d> {
    pub conv: Conv2d,
    pub norm: N,
    /// The inference form: upsampling read into the convolution, norm folded, ReLU (a norm
    /// that does not fold, and its ReLU, after it).
    #[module(skip)]
    pub inference: Option<InferenceConv>,
}

impl<N: BlockNorm> InferenceForm for UpBlock2d<N> {
    fn into_inference_form(mut self) -> Self {
        let surroundings = Fused {
            upsample_input: true,
            relu: N::FOLDS,
            ..Fused::default()
        };
        self.inference = InferenceConv::new(&self.conv, self.norm.folded(), surroundings);
        self
    }
}

impl<N: BlockNorm> UpBlock2d<N> {
    pub fn new(input: usize, output: usize, device: &Device) -> Self {
        Self {
            conv: conv(input, output, 3, 1, device),
            norm: N::new(output, device),
            inference: None,
        }
    }

    /// [b, in, h, w] → [b, out, 2h, 2w]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = prepared(self.inference.as_ref(), &x) {
            return if N::FOLDS { y } else { self.norm.forward_relu(y) };
        }
        self.norm.forward_relu(convolve(&self.conv, upsample2(x)))
    }

    /// [`Self::forward`] of `head` and `tail` concatenated along channels (a decoder's output
    /// and its skip): the prepared form reads them in place where it can.
    pub fn forward_concatenated(&self, head: Tensor<4>, tail: Tensor<4>) -> Tensor<4> {
        if let Some(y) = self
            .inference
            .as_ref()
            .and_then(|inference| inference.forward_concatenated(&head, &tail))
        {
            return if N::FOLDS { y } else { self.norm.forward_relu(y) };
        }
        self.forward(cat_channels(vec![head, tail]))
    }
}

/// Encoder block: conv, norm, ReLU, 2×2 average pooling.
#[derive(Module, Debug)]
pub struct DownBlock2d<N: BlockNorm = BatchNorm2d> {
    pub conv: Conv2d,
    pub norm: N,
    /// The inference form: norm folded, ReLU and pooling as the convolution writes (a norm
    /// that does not fold, its ReLU and the pooling, after it).
    #[module(skip)]
    pub inference: Option<InferenceConv>,
}

impl<N: BlockNorm> InferenceForm for DownBlock2d<N> {
    fn into_inference_form(mut self) -> Self {
        let surroundings = Fused {
            relu: N::FOLDS,
            pool_output: N::FOLDS,
            ..Fused::default()
        };
        self.inference = InferenceConv::new(&self.conv, self.norm.folded(), surroundings);
        self
    }
}

impl<N: BlockNorm> DownBlock2d<N> {
    pub fn new(input: usize, output: usize, device: &Device) -> Self {
        Self {
            conv: conv(input, output, 3, 1, device),
            norm: N::new(output, device),
            inference: None,
        }
    }

    /// [b, in, h, w] → [b, out, h/2, w/2]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = prepared(self.inference.as_ref(), &x) {
            return if N::FOLDS { y } else { self.norm.forward_relu_pool(y) };
        }
        self.norm.forward_relu_pool(convolve(&self.conv, x))
    }
}

/// Conv, norm, ReLU at the same resolution.
#[derive(Module, Debug)]
pub struct SameBlock2d<N: BlockNorm = BatchNorm2d> {
    pub conv: Conv2d,
    pub norm: N,
    /// The inference form: norm folded, ReLU as the convolution writes (a norm that does not
    /// fold, and its ReLU, after it).
    #[module(skip)]
    pub inference: Option<InferenceConv>,
}

impl<N: BlockNorm> InferenceForm for SameBlock2d<N> {
    fn into_inference_form(mut self) -> Self {
        let surroundings = Fused {
            relu: N::FOLDS,
            ..Fused::default()
        };
        self.inference = InferenceConv::new(&self.conv, self.norm.folded(), surroundings);
        self
    }
}

impl<N: BlockNorm> SameBlock2d<N> {
    pub fn new(input: usize, output: usize, kernel: usize, padding: usize, device: &Device) -> Self {
        Self {
            conv: conv(input, output, kernel, padding, device),
            norm: N::new(output, device),
            inference: None,
        }
    }

    /// [b, in, h, w] → [b, out, h, w]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = prepared(self.inference.as_ref(), &x) {
            return if N::FOLDS { y } else { self.norm.forward_relu(y) };
        }
        self.norm.forward_relu(convolve(&self.conv, x))
    }
}

/// Channels of the hourglass at depth `level`: `min(max_features, block_expansion · 2^level)`.
fn hourglass_channels(block_expansion: usize, max_features: usize, level: usize) -> usize {
    max_features.min(block_expansion << level)
}

/// Channels of an hourglass's output: `block_expansion + in_features`.
pub fn hourglass_out_filters(block_expansion: usize, in_features: usize) -> usize {
    block_expansion + in_features
}

/// Channels of each decoder level's output (what [`Hourglass::forward_levels`] returns),
/// coarsest first: the up block's output and its skip (TPSMM's `Decoder.out_channels` without
/// its first entry, the bottleneck's).
pub fn hourglass_level_filters(
    block_expansion: usize,
    in_features: usize,
    num_blocks: usize,
    max_features: usize,
) -> Vec<usize> {
    let ch = |level| hourglass_channels(block_expansion, max_features, level);
    (0..num_blocks)
        .rev()
        .map(|i| {
            if i == 0 {
                block_expansion + in_features
            } else {
                2 * ch(i)
            }
        })
        .collect()
}

/// Hourglass encoder: `num_blocks` down blocks; keeps every intermediate map for the skips.
#[derive(Module, Debug)]
pub struct Encoder<N: BlockNorm = BatchNorm2d> {
    pub down_blocks: Vec<DownBlock2d<N>>,
}

/// Hourglass decoder: `num_blocks` up blocks, each followed by concatenation with the skip.
#[derive(Module, Debug)]
pub struct Decoder<N: BlockNorm = BatchNorm2d> {
    pub up_blocks: Vec<UpBlock2d<N>>,
}

/// U-Net-like hourglass used by the keypoint detector and the dense motion network.
#[derive(Module, Debug)]
pub struct Hourglass<N: BlockNorm = BatchNorm2d> {
    pub encoder: Encoder<N>,
    pub decoder: Decoder<N>,
}

impl<N: BlockNorm> Hourglass<N> {
    pub fn new(
        block_expansion: usize,
        in_features: usize,
        num_blocks: usize,
        max_features: usize,
        device: &Device,
    ) -> Self {
        let ch = |level| hourglass_channels(block_expansion, max_features, level);
        let down_blocks = (0..num_blocks)
            .map(|i| {
                let input = if i == 0 { in_features } else { ch(i) };
                DownBlock2d::new(input, ch(i + 1), device)
            })
            .collect();
        let up_blocks = (0..num_blocks)
            .rev()
            .map(|i| {
                let input = if i == num_blocks - 1 { 1 } else { 2 } * ch(i + 1);
                UpBlock2d::new(input, ch(i), device)
            })
            .collect();
        Self {
            encoder: Encoder { down_blocks },
            decoder: Decoder { up_blocks },
        }
    }

    /// [b, in, h, w] → [b, block_expansion + in, h, w]; h and w divisible by 2^num_blocks.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        joined(self.forward_parts(x))
    }

    /// [`Self::forward`] as the two parts it concatenates (the last up block's output
    /// `[b, block_expansion, h, w]` and the input), for a convolution that reads them in place
    /// ([`stacked_forward`]); an hourglass without blocks gives its input alone.
    pub fn forward_parts(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        let (mut levels, skip) = self.run(x, false);
        (levels.pop().expect("an hourglass has at least one level"), skip)
    }

    /// Every decoder level's output, coarsest first, the last at the input's resolution
    /// (TPSMM's `Hourglass.forward(x, mode=1)`).
    pub fn forward_levels(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        self.run(x, true).0
    }

    /// The decoder's outputs: every level's, or only the last (so that the others are freed as
    /// the decoder goes) with its skip apart, not concatenated.
    fn run(&self, x: Tensor<4>, every_level: bool) -> (Vec<Tensor<4>>, Option<Tensor<4>>) {
        let mut skips = vec![x];
        for block in &self.encoder.down_blocks {
            let next = block.forward(skips[skips.len() - 1].clone());
            skips.push(next);
        }
        let mut out = skips.pop().expect("the encoder output is always present");
        let mut levels = Vec::with_capacity(self.decoder.up_blocks.len());
        // Without every level, each output and its skip go to the next up block unconcatenated
        // (its prepared form reads both in place), the last pair to the caller.
        let mut pending_skip: Option<Tensor<4>> = None;
        for block in &self.decoder.up_blocks {
            out = match pending_skip.take() {
                Some(skip) => block.forward_concatenated(out, skip),
                None => block.forward(out),
            };
            let skip = skips.pop().expect("one skip per up block");
            if every_level {
                out = cat_channels(vec![out, skip]);
                levels.push(out.clone());
            } else {
                pending_skip = Some(skip);
            }
        }
        if !every_level {
            levels.push(out);
        }
        (levels, pending_skip)
    }
}

impl<N: BlockNorm> InferenceForm for Hourglass<N> {
    fn into_inference_form(mut self) -> Self {
        self.encoder.down_blocks = self.encoder.down_blocks.into_inference_form();
        self.decoder.up_blocks = self.decoder.up_blocks.into_inference_form();
        self
    }
}

/// Band-limited downsampling: a Gaussian blur (σ = (1/scale − 1)/2) then keeping every
/// `1/scale`-th pixel, done here as one strided depthwise convolution.
#[derive(Module, Debug)]
pub struct AntiAliasInterpolation2d {
    /// Depthwise Gaussian kernel [channels, 1, k, k]; a fixed buffer in FOMM, never trained.
    pub weight: Param<Tensor<4>>,
    pub padding: usize,
    pub stride: usize,
    pub channels: usize,
}

impl AntiAliasInterpolation2d {
    pub fn new(channels: usize, scale: f64, device: &Device) -> Self {
        let sigma = (1.0 / scale - 1.0) / 2.0;
        // Python's round() rounds halves to even.
        let kernel_size = 2 * (sigma * 4.0).round_ties_even() as usize + 1;
        let mean = (kernel_size - 1) as f64 / 2.0;
        let gauss: Vec<f64> = (0..kernel_size)
            .map(|i| (-((i as f64 - mean).powi(2)) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = gauss.iter().flat_map(|a| gauss.iter().map(move |b| a * b)).sum();
        let kernel: Vec<f32> = (0..channels)
            .flat_map(|_| {
                gauss
                    .iter()
                    .flat_map(|a| gauss.iter().map(move |b| (a * b / total) as f32))
            })
            .collect();
        let weight = Tensor::from_data(TensorData::new(kernel, [channels, 1, kernel_size, kernel_size]), device);
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            // The kernel size is odd, so torch's asymmetric (ka, kb) padding is symmetric here.
            padding: kernel_size / 2,
            stride: (1.0 / scale).round() as usize,
            channels,
        }
    }

    /// [b, c, h, w] → [b, c, ceil(h·scale), ceil(w·scale)]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.stride == 1 {
            return x;
        }
        // Blurring at every pixel and then slicing `[::s, ::s]` equals a stride-s convolution
        // (on a GPU one launch of the kernels crate's direct convolution).
        let options = ConvOptions::new(
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            self.channels,
        );
        let weight = self.weight.val();
        crate::kernels::conv2d(&x, &weight, None, &options).unwrap_or_else(|| conv2d(x, weight, None, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn anti_alias_kernel_matches_fomm_for_quarter_scale() {
        let down = AntiAliasInterpolation2d::new(3, 0.25, &device());
        // σ = 1.5, kernel 2·round(6)+1 = 13, normalised to sum 1 per channel.
        assert_eq!(down.weight.dims(), [3, 1, 13, 13]);
        assert_eq!(down.padding, 6);
        assert_eq!(down.stride, 4);
        let sum: f32 = down.weight.val().narrow(0, 0, 1).sum().into_scalar();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        // Centre over corner: exp(0) / exp(-(6² + 6²) / (2·1.5²)) = e^16.
        let data = down.weight.val().into_data().try_to_vec::<f32>().expect("f32");
        let ratio = (data[6 * 13 + 6] / data[0]) as f64;
        assert!((ratio.ln() - 16.0).abs() < 1e-3, "{ratio}");
    }

    #[test]
    fn anti_alias_keeps_a_constant_image_inside_and_samples_every_fourth_pixel() {
        let down = AntiAliasInterpolation2d::new(1, 0.25, &device());
        let x = Tensor::<4>::ones([1, 1, 64, 64], &device());
        let y = down.forward(x);
        assert_eq!(y.dims(), [1, 1, 16, 16]);
        // Pixel (8, 8) of the output is pixel (32, 32) of the input, far from the zero padding.
        let centre: f32 = y.slice([0..1, 0..1, 8..9, 8..9]).into_scalar();
        assert!((centre - 1.0).abs() < 1e-5, "{centre}");
    }

    #[test]
    fn hourglass_output_has_block_expansion_plus_input_channels() {
        let hg = Hourglass::<BatchNorm2d>::new(4, 3, 2, 16, &device());
        let y = hg.forward(Tensor::<4>::zeros([2, 3, 8, 8], &device()));
        assert_eq!(y.dims(), [2, hourglass_out_filters(4, 3), 8, 8]);
        // The decoder's input channels follow FOMM: 1× at the bottom, 2× (skip) above.
        assert_eq!(hg.decoder.up_blocks[0].conv.weight.dims()[1], 16);
        assert_eq!(hg.decoder.up_blocks[1].conv.weight.dims()[1], 16);
    }

    #[test]
    fn down_block_pools_by_averaging() {
        let mut block = DownBlock2d::<BatchNorm2d>::new(1, 1, &device());
        // Identity conv (centre tap 1), identity batch norm: output = avgpool(relu(x)).
        let mut w = vec![0.0f32; 9];
        w[4] = 1.0;
        block.conv.weight = Param::from_data(TensorData::new(w, [1, 1, 3, 3]), &device());
        block.conv.bias = Some(Param::from_data(TensorData::new(vec![0.0f32], [1]), &device()));
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, -3.0, 4.0], [1, 1, 2, 2]), &device());
        let y = block.forward(x);
        // The identity batch norm still divides by √(1 + ε).
        let expected = Tensor::<4>::from_data(
            TensorData::new(
                vec![(1.0f32 + 2.0 + 0.0 + 4.0) / 4.0 / (1.0f32 + 1e-5).sqrt()],
                [1, 1, 1, 1],
            ),
            &device(),
        );
        y.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn batch_norm_trains_on_batch_statistics_and_tracks_the_unbiased_variance() {
        let train = device().autodiff();
        let bn = BatchNorm2d::new(1, &train);
        // Values 1, 2, 3, 6 over batch and pixels: mean 3, biased variance 3.5, unbiased 14/3.
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [2, 1, 1, 2]), &train);
        let y = bn.forward(x).into_data().try_to_vec::<f32>().expect("f32");
        let sd = (3.5f32 + 1e-5).sqrt();
        for (got, want) in y.iter().zip([-2.0 / sd, -1.0 / sd, 0.0, 3.0 / sd]) {
            assert!((got - want).abs() < 1e-6, "{y:?}");
        }
        let mean: f32 = bn.running_mean.value_sync().into_scalar();
        let var: f32 = bn.running_var.value_sync().into_scalar();
        assert!((mean - 0.3).abs() < 1e-6, "{mean}");
        assert!((var - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6, "{var}");

        // A non-finite batch leaves the running statistics as they were.
        let nan = Tensor::<4>::from_data(TensorData::new(vec![f32::NAN, 1.0, 2.0, 3.0], [2, 1, 1, 2]), &train);
        let _ = bn.forward(nan);
        let mean_after: f32 = bn.running_mean.value_sync().into_scalar();
        let var_after: f32 = bn.running_var.value_sync().into_scalar();
        assert_eq!((mean_after, var_after), (mean, var));

        // Inference (no autodiff) normalizes by the running statistics.
        let mut eval = BatchNorm2d::new(1, &device());
        eval.running_mean = RunningState::new(Tensor::from_data(TensorData::new(vec![1.0f32], [1]), &device()));
        eval.running_var = RunningState::new(Tensor::from_data(TensorData::new(vec![4.0f32], [1]), &device()));
        let x = Tensor::<4>::from_data(TensorData::new(vec![5.0f32], [1, 1, 1, 1]), &device());
        let y: f32 = eval.forward(x).into_scalar();
        assert!((y - 4.0 / (4.0f32 + 1e-5).sqrt()).abs() < 1e-6, "{y}");
    }

    /// Instance-norm blocks (TPSMM's) in their inference form — the convolution prepared
    /// (Winograd on these 32×32 maps, the direct kernel for the 7×7), the norm after it — give
    /// what they give as trained.
    #[test]
    fn instance_norm_blocks_in_their_inference_form_match_as_trained() {
        let device = device();
        device.seed(3);
        let random =
            |shape: [usize; 4]| Tensor::<4>::random(shape, burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let randomize = |norm: &mut InstanceNorm2d| {
            let c = norm.weight.dims()[0];
            let values = |lo: f64, hi: f64| {
                Param::from_tensor(Tensor::<1>::random(
                    [c],
                    burn::tensor::Distribution::Uniform(lo, hi),
                    &device,
                ))
            };
            norm.weight = values(0.5, 1.5);
            norm.bias = values(-0.2, 0.2);
        };
        let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
            let difference: f32 = (a - b).abs().max().into_scalar();
            assert!(difference < 1e-4, "{what}: {difference}");
        };
        let x = random([1, 16, 32, 32]);

        let mut res = ResBlock2d::<InstanceNorm2d>::new(16, 3, 1, &device);
        randomize(&mut res.norm1);
        randomize(&mut res.norm2);
        let expected = res.forward(x.clone());
        let res = res.into_inference_form();
        assert!(res.inference.is_some());
        close(res.forward(x.clone()), expected, "ResBlock2d");

        let mut down = DownBlock2d::<InstanceNorm2d>::new(16, 24, &device);
        randomize(&mut down.norm);
        let expected = down.forward(x.clone());
        close(down.into_inference_form().forward(x.clone()), expected, "DownBlock2d");

        let mut up = UpBlock2d::<InstanceNorm2d>::new(16, 8, &device);
        randomize(&mut up.norm);
        let expected = up.forward(x.clone());
        close(up.into_inference_form().forward(x.clone()), expected, "UpBlock2d");

        let mut same = SameBlock2d::<InstanceNorm2d>::new(16, 8, 7, 3, &device);
        randomize(&mut same.norm);
        let expected = same.forward(x.clone());
        let same = same.into_inference_form();
        assert!(same.inference.is_some(), "the 7×7 runs the direct kernel");
        close(same.forward(x), expected, "SameBlock2d 7×7");
    }

    #[test]
    fn upsample_repeats_each_pixel() {
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]), &device());
        let y = upsample2(x).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(&y[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    }
}
