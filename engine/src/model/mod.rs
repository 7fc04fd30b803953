//! The networks of the First Order Motion Model, one file per part of the paper, the
//! discriminators of FOMM+ and PriorityCut, and the Thin-Plate Spline Motion Model ([`tpsmm`]).
//!
//! Every module mirrors the official implementation's structure and parameter names, so an
//! official checkpoint loads by key ([`crate::import`]).

pub mod blocks;
pub mod dense_motion;
pub mod discriminator;
pub mod generator;
pub mod keypoint_detector;
pub mod keypoints;
pub mod tpsmm;
pub mod unet_discriminator;
pub mod vgg19;

pub use blocks::InferenceForm;
pub use dense_motion::{DenseMotion, DenseMotionConfig, DenseMotionNetwork};
pub use discriminator::{DiscriminatorConfig, DiscriminatorOutput, MultiScaleDiscriminator};
pub use generator::{EncodedSource, GeneratorConfig, GeneratorOutput, OcclusionAwareGenerator};
pub use keypoint_detector::{KpDetector, KpDetectorConfig};
pub use keypoints::Keypoints;
pub use unet_discriminator::{UNetDiscriminator, UNetDiscriminatorConfig, UNetDiscriminatorOutput};
pub use vgg19::Vgg19;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{FloatDType, Tensor};

/// `module` with every float parameter and buffer (batch norms' running statistics) in `dtype`:
/// an animation model stored in f16 on a GPU ([`crate::kernels::precision::half_precision_on`]).
pub fn with_float_dtype<M: Module>(module: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| tensor.cast(dtype))
        }
    }
    module.map(&mut Cast(dtype))
}
