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
) -> f32 {
    let head_channels = input.shape(1);
    let channels = weight.shape(1);
    // Where each of the nine taps reads, found once: the loop over channels then only loads
    // and multiplies.
    let mut inside = Array::<bool>::new(9usize);
    let mut head_offset = Array::<usize>::new(9usize);
    let mut tail_offset = Array::<usize>::new(9usize);
    let mut weight_offset = Array::<usize>::new(9usize);
    #[unroll]
    for tap in 0..9usize {
        let iy = (y + tap / 3) as i32 - 1;
        let ix = (x + tap % 3) as i32 - 1;
        let within = iy >= 0 && iy < height as i32 && ix >= 0 && ix < width as i32;
        let mut source_y = 0usize;
        let mut source_x = 0usize;
        if within {
            source_y = iy as usize;
            source_x = ix as usize;
            if upsample {
                source_y /= 2;
                source_x /= 2;
            }
        }
        inside[tap] = within;
        head_offset[tap] = image * input.stride(0) + source_y * input.stride(2) + source_x * input.stride(3);
        tail_offset[tap] = 0usize;
        if concatenated {
            tail_offset[tap] = image * tail.stride(0) + source_y * tail.stride(2) + source_x * tail.stride(3);
        }
        weight_offset[tap] = channel * weight.stride(0) + (tap / 3) * weight.stride(2) + (tap % 3) * weight.stride(3);
    }
    let mut sum = f32::cast_from(bias[channel]);
    for input_channel in 0..channels {
        let mut from_tail = false;
        if concatenated {
            from_tail = input_channel >= head_channels;
        }
        let mut channel_scale = f32::new(1.0);
        let mut channel_shift = f32::new(0.0);
        if affine {
            channel_scale = f32::cast_from(scale[input_channel]);
            channel_shift = f32::cast_from(shift[input_channel]);
        }
        let weights = input_channel * weight.stride(1);
        #[unroll]
        for tap in 0..9usize {
            if inside[tap] {
                let mut value = if from_tail {
                    f32::cast_from(tail[tail_offset[tap] + (input_channel - head_channels) * tail.stride(1)])
                } else {
                    f32::cast_from(input[head_offset[tap] + input_channel * input.stride(1)])
                };
                if affine {
                    value = f32::max(value * channel_scale + channel_shift, 0.0);
                }
                sum += value * f32::cast_from(weight[weight_offset[tap] + weights]);
            }
        }
    }
    if relu {
        sum = f32::max(sum, 0.0);
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
    // The convolution at each pixel of the output's window: 2×2 with pooling, else 1×1.
    let window = comptime!(if pool { 2usize } else { 1usize });
    let mut total = f32::new(0.0);
    #[unroll]
    for dy in 0..window {
        #[unroll]
        for dx in 0..window {
            total += convolution_at::<F>(
                input,
                tail,
                scale,
                shift,
                weight,
                bias,
                image,
                channel,
                window * y + dy,
                window * x + dx,
                height,
                width,
                concatenated,
                upsample,
                affine,
                relu,
            );
        }
    }
    if pool {
        total *= 0.25;
    }
    output[index] = F::cast_from(total);
}
