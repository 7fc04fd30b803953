//! The kernel of [`super::direct_conv`]: a convolution of few outputs, one invocation per
//! output pixel and block of output channels.

use cubecl::prelude::*;

/// Adds `Σ_{ky, kx} w[o, ·, ky, kx] · x[at + (top + ky)·…, (left + kx)·…]` to `sums[j]` for the
/// `block` output channels `o` whose weights for this input channel start at `weights[j]`, over
/// the taps inside the input (`ky ∈ first_row..end_row`, `kx ∈ first_column..end_column`): the
/// zero padding adds nothing, so it is not read; each input value is read once for the block.
#[allow(clippy::too_many_arguments)]
#[cube]
fn taps<F: Float>(
    input: &Tensor<F>,
    at: usize,
    weight: &Tensor<F>,
    weights: &Array<usize>,
    sums: &mut Array<f32>,
    top: i32,
    left: i32,
    first_row: usize,
    end_row: usize,
    first_column: usize,
    end_column: usize,
    #[comptime] block: usize,
) {
    for ky in first_row..end_row {
        let row = at + (top + ky as i32) as usize * input.stride(2);
        let weight_row = ky * weight.stride(2);
        for kx in first_column..end_column {
            let value = f32::cast_from(input[row + (left + kx as i32) as usize * input.stride(3)]);
            let tap = weight_row + kx * weight.stride(3);
            #[unroll]
            for j in 0..block {
                sums[j] += value * f32::cast_from(weight[weights[j] + tap]);
            }
        }
    }
}

/// The taps `first..end` of a filter of `size` taps whose first reads at `start` of an axis of
/// `length` values: those inside it.
#[cube]
fn inside(start: i32, size: i32, length: i32) -> (usize, usize) {
    let mut first = 0i32;
    if start < 0 {
        first = -start;
    }
    let mut end = size;
    if start + size > length {
        end = length - start;
    }
    if end < first {
        end = first;
    }
    (first as usize, end as usize)
}

/// One invocation per output pixel `[b, ·, y', x']` and block of `block` output channels of a
/// group (the last block of a group may hold fewer):
/// `bias[o] + Σ_{c ∈ group(o)} Σ_{ky, kx} w[o, c, ky, kx] · x[b, c, y'·s + ky − p, x'·s + kx − p]`,
/// the input being `input` then `tail` along channels where `concatenated`; then the sigmoid if
/// asked for. The output is contiguous.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn direct_conv_kernel<F: Float>(
    input: &Tensor<F>,
    tail: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    output: &mut Tensor<F>,
    stride_y: u32,
    stride_x: u32,
    padding_y: u32,
    padding_x: u32,
    groups: u32,
    #[comptime] block: usize,
    #[comptime] concatenated: bool,
    #[comptime] with_bias: bool,
    #[comptime] sigmoid: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (out_channels, out_height, out_width) = (output.shape(1), output.shape(2), output.shape(3));
    let group_outputs = out_channels / groups as usize;
    let group_blocks = group_outputs.div_ceil(block);
    let blocks = groups as usize * group_blocks;
    let index = ABSOLUTE_POS;
    if index >= output.shape(0) * blocks * out_height * out_width {
        terminate!();
    }
    let x = index % out_width;
    let y = (index / out_width) % out_height;
    let block_index = (index / (out_width * out_height)) % blocks;
    let image = index / (out_width * out_height * blocks);
    let group = block_index / group_blocks;
    let first_output = group * group_outputs + (block_index % group_blocks) * block;
    let group_end = (group + 1) * group_outputs;

    let group_channels = weight.shape(1);
    let first_channel = group * group_channels;
    let head_channels = input.shape(1);
    let top = (y * stride_y as usize) as i32 - padding_y as i32;
    let left = (x * stride_x as usize) as i32 - padding_x as i32;
    let (first_row, end_row) = inside(top, weight.shape(2) as i32, input.shape(2) as i32);
    let (first_column, end_column) = inside(left, weight.shape(3) as i32, input.shape(3) as i32);

    // The block's channels past its group's end (a last, partial block) compute the group's
    // last channel again and are not written.
    let mut channels = Array::<usize>::new(block);
    // Sums in f32 whatever the maps are stored in.
    let mut sums = Array::<f32>::new(block);
    #[unroll]
    for j in 0..block {
        let mut channel = first_output + j;
        if channel >= group_end {
            channel = group_end - 1;
        }
        channels[j] = channel;
        sums[j] = f32::new(0.0);
        if with_bias {
            sums[j] = f32::cast_from(bias[channel]);
        }
    }
    let mut weights = Array::<usize>::new(block);
    for c in 0..group_channels {
        let input_channel = first_channel + c;
        #[unroll]
        for j in 0..block {
            weights[j] = channels[j] * weight.stride(0) + c * weight.stride(1);
        }
        let mut from_tail = false;
        if concatenated {
            from_tail = input_channel >= head_channels;
        }
        if from_tail {
            let at = image * tail.stride(0) + (input_channel - head_channels) * tail.stride(1);
            taps::<F>(
                tail,
                at,
                weight,
                &weights,
                &mut sums,
                top,
                left,
                first_row,
                end_row,
                first_column,
                end_column,
                block,
            );
        } else {
            let at = image * input.stride(0) + input_channel * input.stride(1);
            taps::<F>(
                input,
                at,
                weight,
                &weights,
                &mut sums,
                top,
                left,
                first_row,
                end_row,
                first_column,
                end_column,
                block,
            );
        }
    }
    let pixels = out_height * out_width;
    #[unroll]
    for j in 0..block {
        if first_output + j < group_end {
            let mut value = sums[j];
            if sigmoid {
                value = 1.0 / (1.0 + f32::exp(0.0 - value));
            }
            output[(image * out_channels + first_output + j) * pixels + y * out_width + x] = F::cast_from(value);
        }
    }
}
