//! A convolution in its inference form: made once from weights that no longer change (an
//! animation's model), with what its block computes around it folded in — eval-mode
//! batch norms (`w' = w·γ/√(σ²+ε)`, `b' = (b − μ)·γ/√(σ²+ε) + β`), a pre-activation batch norm
//! and ReLU applied as the input is read, ×2 upsampling, ReLU, 2×2 average pooling and a
//! residual add — and its weights prepared for its kernel: Winograd F(4×4, 3×3) for 3×3
//! stride-1 convolutions ([`super::winograd`]), the direct kernel for 5×5 and 7×7
//! ([`super::direct_conv`]).
//!
//! The Winograd products run in the process's precision ([`crate::precision`]): bf16 where
//! chosen and the CPU has it.
//!
//! On a GPU (weights on a CubeCL device) the 3×3 convolutions are prepared likewise, in f32, by
//! [`crate::gpu::PreparedConv3x3`]; the others are not.
//!
//! A network block holds one and calls [`InferenceConv::forward`] before its own layers; it
//! declines (`None`) for tensors on another device than its weights', for autodiff tensors and
//! where the GPU's kernel choice runs burn's own, and the block then runs as trained. On the CPU
//! outputs of 3×3 convolutions are stored channels-last ([`crate::cpu::layout`]), so the next
//! block reads them in place.

use std::sync::Arc;

use burn::backend::Flex;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::cpu::conv::{direct_forward, direct_padding, is_3x3_same};
use crate::cpu::direct_conv::DirectConv;
use crate::cpu::flex::FlexPrimitive;
use crate::cpu::layout::channels_last;
use crate::cpu::winograd::{ChannelAffine, Fused, FusedConv3x3};
use crate::gpu::PreparedConv3x3;

/// A convolution and its block's surroundings, prepared once (see the module's comment).
/// Cloning shares the prepared weights.
#[derive(Debug, Clone)]
pub struct InferenceConv(Arc<Kernel>);

#[derive(Debug)]
enum Kernel {
    Winograd(Box<FusedConv3x3>),
    Direct(DirectConv),
    Gpu(Box<PreparedConv3x3>),
}

impl InferenceConv {
    /// `conv`, then `output_norm` (an eval-mode batch norm folded into the weights), with `fused`
    /// around them. `None` where no kernel here serves: weights with autodiff, on flex shapes
    /// other than 3×3 stride-1 padding-1 or the direct kernel's (and for the direct kernel
    /// anything but a ReLU around it), on a GPU what [`PreparedConv3x3::new`] declines.
    pub fn new(conv: &Conv2d, output_norm: Option<ChannelAffine>, fused: Fused) -> Option<Self> {
        let weight = conv.weight.val();
        // Devices compare equal with or without autodiff.
        let device = weight.device();
        if device.is_autodiff() {
            return None;
        }
        if device != Device::flex() {
            return PreparedConv3x3::new(conv, output_norm, &fused)
                .map(|gpu| Self(Arc::new(Kernel::Gpu(Box::new(gpu)))));
        }
        let bias = conv.bias.as_ref().map(|b| b.val());
        let kernel = if is_3x3_same(conv) {
            Kernel::Winograd(Box::new(FusedConv3x3::new(weight, bias, output_norm, fused)))
        } else {
            let padding = direct_padding(conv)?;
            if fused.input_affine.is_some() || fused.upsample_input || fused.pool_output {
                return None;
            }
            Kernel::Direct(DirectConv::with_output_norm(
                weight,
                bias,
                padding,
                output_norm,
                fused.relu,
            ))
        };
        Some(Self(Arc::new(kernel)))
    }

    /// The block's output for `x` `[b, C_in, h, w]`, `residual` (of the output's shape) added
    /// last; `None` unless `x` (and `residual`) are plain tensors on the weights' device, or for
    /// a residual to the direct kernel.
    pub fn forward(&self, x: &Tensor<4>, residual: Option<&Tensor<4>>) -> Option<Tensor<4>> {
        if let Kernel::Gpu(conv) = &*self.0 {
            return conv.forward(x, residual);
        }
        let input = on_plain_flex(x)?;
        match &*self.0 {
            Kernel::Winograd(conv) => {
                let residual = match residual {
                    Some(r) => Some(on_plain_flex(r)?),
                    None => None,
                };
                let residual = residual.as_ref().map(channels_last);
                let output = conv.forward_at(crate::precision(), &channels_last(&input), residual.as_ref());
                Some(output.into_tensor(&Device::flex()))
            }
            Kernel::Direct(conv) if residual.is_none() => Some(direct_forward(conv, &input)),
            Kernel::Direct(_) | Kernel::Gpu(_) => None,
        }
    }

    /// [`Self::forward`] of `head` and `tail` concatenated along channels, read in place where
    /// the kernel can (the GPU's); `None` elsewhere, and the caller concatenates them.
    pub fn forward_concatenated(&self, head: &Tensor<4>, tail: &Tensor<4>) -> Option<Tensor<4>> {
        match &*self.0 {
            Kernel::Gpu(conv) => conv.forward_concatenated(head, tail),
            _ => None,
        }
    }
}

fn on_plain_flex(x: &Tensor<4>) -> Option<FlexPrimitive> {
    x.clone().try_into_primitive::<Flex>().ok()
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::activation::relu;
    use burn::tensor::module::avg_pool2d;
    use burn::tensor::ops::AvgPoolOptions;

    use super::*;
    use crate::cpu::layout::is_channels_last;
    use crate::test_support::{assert_close, uniform};

    fn conv(input: usize, output: usize, kernel: usize, padding: usize, device: &Device) -> Conv2d {
        let mut conv = Conv2dConfig::new([input, output], [kernel, kernel])
            .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
            .init(device);
        conv.bias = Some(Param::from_tensor(uniform([output], 0.5)));
        conv
    }

    /// A 3×3 block (batch norm folded, ReLU, pooling) and a 7×7 head against burn's layers:
    /// planar and channels-last inputs alike, the 3×3 output stored channels-last.
    #[test]
    fn blocks_match_burns_layers_on_either_storage() {
        let device = Device::flex();
        let block = conv(6, 8, 3, 1, &device);
        let (scale, shift) = (uniform([8], 1.0), uniform([8], 1.0));
        let norm = ChannelAffine {
            scale: scale.to_data().try_into_vec::<f32>().expect("f32"),
            shift: shift.to_data().try_into_vec::<f32>().expect("f32"),
        };
        let fused = Fused {
            relu: true,
            pool_output: true,
            ..Fused::default()
        };
        let prepared = InferenceConv::new(&block, Some(norm), fused).expect("3×3 on flex");
        let x = uniform([2, 6, 20, 24], 1.0);
        let affine = |y: Tensor<4>| y * scale.clone().reshape([1, 8, 1, 1]) + shift.clone().reshape([1, 8, 1, 1]);
        let expected = avg_pool2d(relu(affine(block.forward(x.clone()))), AvgPoolOptions::new([2, 2]));
        let stored = prepared.forward(&x, None).expect("on flex");
        assert!(is_channels_last(&on_plain_flex(&stored).expect("flex")));
        assert_close("3×3 block", stored.clone(), expected, 2e-5);

        let head = conv(8, 3, 7, 3, &device);
        let prepared_head = InferenceConv::new(&head, None, Fused::default()).expect("7×7 on flex");
        let planar = stored.clone().into_data();
        let planar = Tensor::<4>::from_data(planar, &device);
        let expected = head.forward(planar.clone());
        for (name, input) in [("channels-last", stored), ("planar", planar)] {
            let y = prepared_head.forward(&input, None).expect("on flex");
            assert_close(&format!("7×7 head on {name} storage"), y, expected.clone(), 2e-5);
        }
    }

    /// Off flex without autodiff it declines, as it does for surroundings the direct kernel
    /// does not fold.
    #[test]
    fn declines_what_it_does_not_serve() {
        let autodiff = Device::flex().autodiff();
        assert!(InferenceConv::new(&conv(4, 4, 3, 1, &autodiff), None, Fused::default()).is_none());
        let device = Device::flex();
        let pooled = Fused {
            pool_output: true,
            ..Fused::default()
        };
        assert!(InferenceConv::new(&conv(4, 4, 7, 3, &device), None, pooled).is_none());
        let strided = Conv2dConfig::new([4, 4], [3, 3]).with_stride([2, 2]).init(&device);
        assert!(InferenceConv::new(&strided, None, Fused::default()).is_none());
        let prepared = InferenceConv::new(&conv(4, 4, 3, 1, &device), None, Fused::default()).expect("3×3");
        let tracked = Tensor::<4>::zeros([1, 4, 8, 8], &autodiff);
        assert!(prepared.forward(&tracked, None).is_none());
    }
}
