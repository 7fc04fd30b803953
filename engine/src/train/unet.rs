//! The paper's discriminator side of a training step, whatever model family generates: the U-Net
//! discriminator's terms in the generator's objective, its own step (encoder, decoder, and with
//! a CutMix its mix and consistency terms, U-Net GAN's), and the step's CutMix mask (PriorityCut's
//! from the generator's background and occlusion maps, or a box).

use burn::tensor::{Device, Tensor};

use crate::augment::{mix, priority_cut};
use crate::config::{PriorityCutParams, Variant};
use crate::loss::{consistency, decoder_on_mixed, feature_matching, lsgan_fake, lsgan_real};
use crate::model::unet_discriminator::UNetDiscriminator;
use crate::rng::Rng;

/// A step's CutMix choices, drawn whatever the variant, so that every variant and step keeps
/// the same stream of random numbers: whether to mix, PriorityCut's k per sample (fractions
/// of the image), and `unet-cutmix`'s boxes.
#[derive(Debug, Clone)]
pub struct MixDraws {
    pub mix: bool,
    pub k: Vec<f64>,
    pub box_mask: Option<Tensor<4>>,
}

impl MixDraws {
    pub fn draw(
        variant: Variant,
        params: &PriorityCutParams,
        batch: usize,
        (height, width): (usize, usize),
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let mix = variant.cutmix() && rng.bernoulli(params.cutmix_probability);
        let k: Vec<f64> = (0..batch)
            .map(|_| rng.range(params.k_min, params.k_max) / 100.0)
            .collect();
        let box_mask =
            (variant == Variant::UnetCutmix).then(|| crate::augment::cutmix_mask(height, width, &k, rng, device));
        Self { mix, k, box_mask }
    }
}

/// The discriminator step's forward.
#[derive(Debug, Clone)]
pub struct DiscriminatorPass {
    /// `(name, weighted loss)`: disc_gan, or disc_enc, disc_dec, disc_mix, consistency.
    pub losses: Vec<(&'static str, Tensor<1>)>,
    /// U-Net decoder maps on the real, fake and mixed images.
    pub decoder: [Option<Tensor<4>>; 3],
    /// (mask, mixed image) when the step mixed.
    pub cutmix: Option<(Tensor<4>, Tensor<4>)>,
}

impl DiscriminatorPass {
    /// A step without a discriminator update.
    pub fn none() -> Self {
        Self {
            losses: Vec::new(),
            decoder: [None, None, None],
            cutmix: None,
        }
    }

    pub fn total(&self, device: &Device) -> Tensor<1> {
        sum_losses(&self.losses, device)
    }
}

/// The sum of weighted losses (zero for none).
pub fn sum_losses(losses: &[(&'static str, Tensor<1>)], device: &Device) -> Tensor<1> {
    losses
        .iter()
        .map(|(_, t)| t.clone())
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([1], device))
}

/// The U-Net discriminator's terms in the generator's objective: LSGAN on the encoder's and
/// (weighted by `decoder_weight`) the decoder's scores of the prediction, and feature matching
/// against the real frame where any of its weights is non-zero.
pub fn generator_terms(
    unet: &UNetDiscriminator,
    prediction: &Tensor<4>,
    driving: &Tensor<4>,
    gan_weight: f64,
    decoder_weight: f64,
    matching_weights: &[f64],
    device: &Device,
) -> Vec<(&'static str, Tensor<1>)> {
    let fake = unet.forward(prediction.clone());
    let real = unet.forward(driving.clone());
    let gan = (lsgan_real(fake.global.clone()) + lsgan_real(fake.pixel.clone()) * decoder_weight) * gan_weight;
    let mut terms = vec![("gen_gan", gan)];
    if matching_weights.iter().any(|&w| w != 0.0) {
        terms.push((
            "feature_matching",
            feature_matching(&real.feature_maps, &fake.feature_maps, matching_weights, device),
        ));
    }
    terms
}

/// The U-Net discriminator's step on the real `driving` frames and the generator's `fake` ones
/// (detached): encoder and decoder LSGAN, and with a CutMix `mask` (1 = real) the mixed image's
/// terms, the encoder calling it fake and the decoder finding the mask, and the consistency
/// loss. Adds to `out`.
pub fn discriminator_terms(
    unet: &UNetDiscriminator,
    driving: &Tensor<4>,
    fake: Tensor<4>,
    mask: Option<Tensor<4>>,
    weight: f64,
    params: &PriorityCutParams,
    out: &mut DiscriminatorPass,
) {
    let real = unet.forward(driving.clone());
    let on_fake = unet.forward(fake.clone());
    out.losses.push((
        "disc_enc",
        (lsgan_real(real.global.clone()) + lsgan_fake(on_fake.global.clone())) * weight,
    ));
    out.losses.push((
        "disc_dec",
        (lsgan_real(real.pixel.clone()) + lsgan_fake(on_fake.pixel.clone())) * (weight * params.decoder_weight),
    ));
    if let Some(mask) = mask {
        let mixed = mix(driving.clone(), fake, mask.clone());
        let on_mix = unet.forward(mixed.clone());
        out.losses.push((
            "disc_mix",
            (lsgan_fake(on_mix.global.clone())
                + decoder_on_mixed(on_mix.pixel.clone(), mask.clone()) * params.decoder_weight)
                * weight,
        ));
        out.losses.push((
            "consistency",
            consistency(
                on_mix.pixel.clone(),
                real.pixel.clone(),
                on_fake.pixel.clone(),
                mask.clone(),
            ) * params.consistency_weight,
        ));
        out.decoder[2] = Some(on_mix.pixel);
        out.cutmix = Some((mask, mixed));
    }
    out.decoder[0] = Some(real.pixel);
    out.decoder[1] = Some(on_fake.pixel);
}

/// The step's CutMix mask (1 marks the real pixels of the mix): the given box (`unet-cutmix`),
/// or PriorityCut's from the generator's maps, `background` [b, ≥1, h', w'] whose channel 0 is
/// the background's share of the motion and the finest `occlusion` map (none: all visible),
/// resized to `height × width`.
pub fn cutmix_mask(
    params: &PriorityCutParams,
    background: Tensor<4>,
    occlusion: Option<Tensor<4>>,
    size: (usize, usize),
    k: &[f64],
    box_mask: Option<Tensor<4>>,
) -> Tensor<4> {
    if let Some(mask) = box_mask {
        return mask;
    }
    let background = background.detach();
    let occlusion = match occlusion {
        Some(o) => o.detach(),
        None => background.clone().narrow(1, 0, 1).ones_like(),
    };
    let (h, w) = size;
    let selected = priority_cut(background, occlusion, h, w, params.background_threshold, k).mask;
    if params.fake_where_occluded {
        selected.ones_like() - selected
    } else {
        selected
    }
}
