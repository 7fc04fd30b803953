//! The U-Net discriminator D^U (PriorityCut §3.1, after Schönfeld et al. 2020): the encoder
//! D^U_enc says whether the whole image is real (global realism); the decoder D^U_dec says it
//! for every pixel (local realism), fed through skip connections at each resolution.
//!
//! The encoder is FOMM's patch discriminator made size-preserving: each block is a spectrally
//! normalized conv, instance norm (not on the first block), LeakyReLU(0.2) and 2×2 average
//! pooling, as in FOMM, with 3×3 kernels padded by 1 instead of FOMM's unpadded 4×4 so that
//! every map is exactly half the previous one and the decoder's skips line up. The global head
//! averages the last map and applies a spectrally normalized 1×1 conv; the decoder mirrors the
//! encoder (nearest ×2 upsampling, concatenation with the skip, conv, norm, LeakyReLU) back to
//! full resolution, where a 1×1 conv gives the per-pixel map. Outputs are LSGAN scores:
//! real → 1, fake → 0.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};

use super::blocks::upsample2;
use super::discriminator::{DiscriminatorConfig, InstanceNorm2d, SpectralConv2d};

/// `discriminator_params` as the U-Net discriminator reads them. Defaults: `vox-256.yaml`'s
/// discriminator (block_expansion 32, max_features 512, 4 blocks, spectral norm).
#[derive(Config, Debug)]
pub struct UNetDiscriminatorConfig {
    #[config(default = 32)]
    pub block_expansion: usize,
    #[config(default = 512)]
    pub max_features: usize,
    /// Encoder blocks; the frame must be divisible by 2^num_blocks.
    #[config(default = 4)]
    pub num_blocks: usize,
    #[config(default = true)]
    pub sn: bool,
    #[config(default = 3)]
    pub num_channels: usize,
}

impl UNetDiscriminatorConfig {
    /// The same widths and depth as FOMM's discriminator of the same config.
    pub fn from_discriminator(config: &DiscriminatorConfig) -> Self {
        Self::new()
            .with_block_expansion(config.block_expansion)
            .with_max_features(config.max_features)
            .with_num_blocks(config.num_blocks)
            .with_sn(config.sn)
            .with_num_channels(config.num_channels)
    }

    /// Channels at depth `level` (level 0 = full resolution).
    fn channels(&self, level: usize) -> usize {
        self.max_features.min(self.block_expansion << level)
    }

    pub fn init(&self, device: &Device) -> UNetDiscriminator {
        let n = self.num_blocks;
        let conv3 = |input, output| SpectralConv2d::new(input, output, 3, self.sn, device).with_padding(1);
        let encoder = (0..n)
            .map(|i| {
                let input = if i == 0 { self.num_channels } else { self.channels(i) };
                UNetBlock {
                    conv: conv3(input, self.channels(i + 1)),
                    norm: (i != 0).then(|| InstanceNorm2d::new(self.channels(i + 1), device)),
                }
            })
            .collect();
        // Decoder level i (from n-1 up to 0) takes the map from below and the skip at level i.
        let decoder = (0..n)
            .rev()
            .map(|i| {
                let skip = if i == 0 { self.num_channels } else { self.channels(i) };
                UNetBlock {
                    conv: conv3(self.channels(i + 1) + skip, self.channels(i)),
                    norm: (i != 0).then(|| InstanceNorm2d::new(self.channels(i), device)),
                }
            })
            .collect();
        UNetDiscriminator {
            encoder,
            global_head: SpectralConv2d::new(self.channels(n), 1, 1, self.sn, device),
            decoder,
            pixel_head: SpectralConv2d::new(self.channels(0), 1, 1, self.sn, device),
        }
    }
}

/// Conv, optional instance norm, LeakyReLU(0.2).
#[derive(Module, Debug)]
pub struct UNetBlock {
    pub conv: SpectralConv2d,
    pub norm: Option<InstanceNorm2d>,
}

impl UNetBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = self.conv.forward(x);
        if let Some(norm) = &self.norm {
            out = norm.forward(out);
        }
        leaky_relu(out, 0.2)
    }
}

#[derive(Module, Debug)]
pub struct UNetDiscriminator {
    pub encoder: Vec<UNetBlock>,
    pub global_head: SpectralConv2d,
    /// Deepest level first.
    pub decoder: Vec<UNetBlock>,
    pub pixel_head: SpectralConv2d,
}

/// What D^U says about a batch.
#[derive(Debug, Clone)]
pub struct UNetDiscriminatorOutput {
    /// The encoder's block outputs, finest first (for feature matching).
    pub feature_maps: Vec<Tensor<4>>,
    /// [b, 1] D^U_enc: the whole image real (1) or fake (0).
    pub global: Tensor<2>,
    /// [b, 1, H, W] D^U_dec: each pixel real (1) or fake (0).
    pub pixel: Tensor<4>,
}

impl UNetDiscriminator {
    /// `image` [b, c, H, W], H and W divisible by 2^num_blocks.
    pub fn forward(&self, image: Tensor<4>) -> UNetDiscriminatorOutput {
        let mut skips = vec![image];
        for block in &self.encoder {
            let below = skips[skips.len() - 1].clone();
            skips.push(avg_pool2d(block.forward(below), AvgPoolOptions::new([2, 2])));
        }
        let feature_maps = skips[1..].to_vec();
        let bottom = skips.pop().expect("the encoder output is always present");
        let [b, c, _, _] = bottom.dims();
        let pooled = bottom.clone().mean_dim(2).mean_dim(3).reshape([b, c, 1, 1]);
        let global = self.global_head.forward(pooled).reshape([b, 1]);

        let mut out = bottom;
        for block in &self.decoder {
            let skip = skips.pop().expect("one skip per decoder block");
            out = block.forward(Tensor::cat(vec![upsample2(out), skip], 1));
        }
        UNetDiscriminatorOutput {
            feature_maps,
            global,
            pixel: self.pixel_head.forward(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_per_pixel_outputs_have_the_right_shapes() {
        let device = Device::flex();
        let config = UNetDiscriminatorConfig::new()
            .with_block_expansion(4)
            .with_max_features(16)
            .with_num_blocks(3);
        let d = config.init(&device);
        let out = d.forward(Tensor::<4>::ones([2, 3, 16, 24], &device));
        assert_eq!(out.global.dims(), [2, 1]);
        assert_eq!(out.pixel.dims(), [2, 1, 16, 24]);
        let shapes: Vec<[usize; 4]> = out.feature_maps.iter().map(|f| f.dims()).collect();
        assert_eq!(shapes, vec![[2, 8, 8, 12], [2, 16, 4, 6], [2, 16, 2, 3]]);
    }

    /// The decoder answers per pixel: trained briefly to call the left half of an image real
    /// and the right half fake, its map separates the halves.
    #[test]
    fn decoder_learns_a_per_pixel_layout() {
        use crate::train::optim::Adam;
        use burn::optim::GradientsParams;
        let device = Device::flex().autodiff();
        let mut d = UNetDiscriminatorConfig::new()
            .with_block_expansion(8)
            .with_max_features(16)
            .with_num_blocks(2)
            .init(&device);
        let image = Tensor::<4>::random([1, 3, 16, 16], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
        let target = Tensor::<4>::cat(
            vec![
                Tensor::ones([1, 1, 16, 8], &device),
                Tensor::zeros([1, 1, 16, 8], &device),
            ],
            3,
        );
        let mut adam = Adam::fomm();
        let mut last = f32::MAX;
        let first: f32 = (d.forward(image.clone()).pixel - target.clone())
            .square()
            .mean()
            .into_scalar();
        for _ in 0..60 {
            let loss = (d.forward(image.clone()).pixel - target.clone()).square().mean();
            last = loss.clone().into_scalar();
            let mut grads = GradientsParams::from_grads(loss.backward(), &d);
            d = adam.step(0.01, d, &mut grads);
        }
        assert!(last < 0.1 * first && last < 0.02, "loss {first} -> {last}");
        let pixel = d.valid().forward(image.inner()).pixel;
        let left: f32 = pixel.clone().slice([0..1, 0..1, 0..16, 0..8]).mean().into_scalar();
        let right: f32 = pixel.slice([0..1, 0..1, 0..16, 8..16]).mean().into_scalar();
        assert!(left > 0.8 && right < 0.2, "left {left} right {right}");
    }
}
