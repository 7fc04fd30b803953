//! The CPU kernels, on burn's flex backend: Winograd F(4×4, 3×3) (F(6×6, 3×3) for inference's f32
//! products on large maps) and direct convolutions for
//! inference ([`winograd`], [`direct_conv`]; a block's prepared form: [`crate::inference`]), the
//! layout convention they share ([`layout`]), and the training step's operations, each one
//! autodiff operation with its own backward pass on `Autodiff<Flex>` ([`conv`], [`batch_norm`],
//! [`grid_sample`], [`pool`], the perceptual loss's [`mean_absolute`]; [`flex`] decides what "on flex" means).

pub mod adam;
pub mod batch_norm;
pub mod buffer;
pub mod conv;
pub mod direct_conv;
pub mod flex;
pub mod grid_sample;
pub mod layout;
pub mod mean_absolute;
pub mod pool;
pub mod simd;
pub mod unsafe_simd;
pub mod winograd;
