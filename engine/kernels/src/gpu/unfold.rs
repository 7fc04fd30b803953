//! The unfold (im2col) kernel of [`super::conv`].

use cubecl::prelude::*;

/// One invocation per unfolded value: `columns[(c − first_channel, ky, kx), (b, y, x)]`.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn unfold_kernel<F: Float>(
    input: &Tensor<F>,
    columns: &mut Tensor<F>,
    first_channel: u32,
    out_height: u32,
    out_width: u32,
    kernel_height: u32,
    kernel_width: u32,
    stride_y: u32,
    stride_x: u32,
    padding_y: u32,
    padding_x: u32,
    dilation_y: u32,
    dilation_x: u32,
    #[define(F)] _dtype: ElemType,
) {
    let index = ABSOLUTE_POS;
    if index >= columns.len() {
        terminate!();
    }
    let pixels = columns.shape(1);
    let tap = index / pixels;
    let pixel = index % pixels;

    let kx = tap % kernel_width as usize;
    let rest = tap / kernel_width as usize;
    let ky = rest % kernel_height as usize;
    let channel = first_channel as usize + rest / kernel_height as usize;
    let ox = pixel % out_width as usize;
    let rest = pixel / out_width as usize;
    let oy = rest % out_height as usize;
    let image = rest / out_height as usize;

    let iy = (oy * stride_y as usize + ky * dilation_y as usize) as i32 - padding_y as i32;
    let ix = (ox * stride_x as usize + kx * dilation_x as usize) as i32 - padding_x as i32;
    let mut value = F::new(0.0);
    if iy >= 0 && iy < input.shape(2) as i32 && ix >= 0 && ix < input.shape(3) as i32 {
        value = input[image * input.stride(0)
            + channel * input.stride(1)
            + iy as usize * input.stride(2)
            + ix as usize * input.stride(3)];
    }
    columns[index] = value;
}
