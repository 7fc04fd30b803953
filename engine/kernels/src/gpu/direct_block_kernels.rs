//! The kernel of [`super::inference`]'s direct path: a block's 3×3 convolution on a small map,
//! with its surroundings, in one launch.

use cubecl::prelude::*;

/// The block's convolution at `(y, x)` of the `height × width` map it runs at, for output
/// channel `channel` of image `image`: bias, the 3×3 taps over every input channel (read through
/// the surroundings, as Winograd's input transform reads them), then the ReLU if asked for.
#[allow(clippy::too_many_arguments)]
#[cube]
fn convolution_at<F: Float>(
    input: &Tensor<F>,
    tail: &Tensor<F>,
    scale: &Tensor<F>,
    shift: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    image: usize,
    channel: usize,
    y: usize,
    x: usize,
    height: usize,
    width: usize,
    #[comptime] concatenated: bool,
    #[comptime] upsample: bool,
    #[comptime] affine: bool,
    #[comptime] relu: bool,
) -> F {
    let head_channels = input.shape(1);
    let channels = weight.shape(1);
    let mut sum = bias[channel];
    for input_channel in 0..channels {
        let mut from_tail = false;
        if concatenated {
            from_tail = input_channel >= head_channels;
        }
        let mut channel_scale = F::new(1.0);
        let mut channel_shift = F::new(0.0);
        if affine {
            channel_scale = scale[input_channel];
            channel_shift = shift[input_channel];
        }
        let weights = channel * weight.stride(0) + input_channel * weight.stride(1);
        #[unroll]
        for ky in 0..3usize {
            let iy = (y + ky) as i32 - 1;
            #[unroll]
            for kx in 0..3usize {
                let ix = (x + kx) as i32 - 1;
                if iy >= 0 && iy < height as i32 && ix >= 0 && ix < width as i32 {
                    let mut source_y = iy as usize;
                    let mut source_x = ix as usize;
                    if upsample {
                        source_y /= 2;
                        source_x /= 2;
                    }
                    let mut value = if from_tail {
                        tail[image * tail.stride(0)
                            + (input_channel - head_channels) * tail.stride(1)
                            + source_y * tail.stride(2)
                            + source_x * tail.stride(3)]
                    } else {
                        input[image * input.stride(0)
                            + input_channel * input.stride(1)
                            + source_y * input.stride(2)
                            + source_x * input.stride(3)]
                    };
                    if affine {
                        value = F::max(value * channel_scale + channel_shift, F::new(0.0));
                    }
                    sum += value * weight[weights + ky * weight.stride(2) + kx * weight.stride(3)];
                }
            }
        }
    }
    if relu {
        sum = F::max(sum, F::new(0.0));
    }
    sum
}

/// One invocation per output value `[b, o, y', x']` (contiguous) of a block whose convolution
/// runs at `height × width`: the convolution with its surroundings (see [`convolution_at`]),
/// averaged over 2×2 windows with `pool`.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn direct_block_kernel<F: Float>(
    input: &Tensor<F>,
    tail: &Tensor<F>,
    scale: &Tensor<F>,
    shift: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    output: &mut Tensor<F>,
    height: u32,
    width: u32,
    #[comptime] concatenated: bool,
    #[comptime] upsample: bool,
    #[comptime] affine: bool,
    #[comptime] relu: bool,
    #[comptime] pool: bool,
    #[define(F)] _dtype: ElemType,
) {
    let index = ABSOLUTE_POS;
    if index >= output.len() {
        terminate!();
    }
    let (out_channels, out_height, out_width) = (output.shape(1), output.shape(2), output.shape(3));
    let x = index % out_width;
    let y = (index / out_width) % out_height;
    let channel = (index / (out_width * out_height)) % out_channels;
    let image = index / (out_width * out_height * out_channels);
    let (height, width) = (height as usize, width as usize);
    if pool {
        let mut total = F::new(0.0);
        #[unroll]
        for dy in 0..2usize {
            #[unroll]
            for dx in 0..2usize {
                total += convolution_at::<F>(
                    input,
                    tail,
                    scale,
                    shift,
                    weight,
                    bias,
                    image,
                    channel,
                    2 * y + dy,
                    2 * x + dx,
                    height,
                    width,
                    concatenated,
                    upsample,
                    affine,
                    relu,
                );
            }
        }
        output[index] = total * F::new(0.25);
    } else {
        output[index] = convolution_at::<F>(
            input,
            tail,
            scale,
            shift,
            weight,
            bias,
            image,
            channel,
            y,
            x,
            height,
            width,
            concatenated,
            upsample,
            affine,
            relu,
        );
    }
}
