//! The bundled sample under `assets/`: the model, photo and clip the window opens on and the
//! commands fall back to when no file is given. One home for these paths, for the command line
//! and the window alike.

use std::path::{Path, PathBuf};

/// `assets/` of the working directory (`cargo run` from the checkout), else of the source tree
/// the binary was built from.
pub fn default_assets() -> PathBuf {
    let here = PathBuf::from("assets");
    if here.join("models").is_dir() {
        here
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
    }
}

/// The bundled sample: a model we trained on synthetic figures, a photo of a figure, a clip of
/// another one moving, the synthetic dataset's config and the face detector's weights.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The model's folder (`model.bpk` + `config.yaml`), what `--checkpoint` defaults to.
    pub model_dir: PathBuf,
    pub checkpoint: PathBuf,
    pub config: PathBuf,
    pub source: PathBuf,
    pub driving: PathBuf,
    pub dataset_config: PathBuf,
    /// facenet-pytorch's MTCNN weights (`pnet.pt`, `rnet.pt`, `onet.pt`).
    pub face_weights: PathBuf,
}

impl Bundle {
    /// The sample's paths under `assets`, whether or not they are there.
    pub fn at(assets: &Path) -> Self {
        let model_dir = assets.join("models/figures-64");
        Self {
            checkpoint: model_dir.join("model.bpk"),
            config: model_dir.join("config.yaml"),
            model_dir,
            source: assets.join("sample/source.png"),
            driving: assets.join("sample/driving.gif"),
            dataset_config: assets.join("configs/synthetic-64.yaml"),
            face_weights: assets.join("models/mtcnn"),
        }
    }

    /// The sample under [`default_assets`].
    pub fn bundled() -> Self {
        Self::at(&default_assets())
    }

    /// The sample under `assets` if its model, photo and clip are all there.
    pub fn found_in(assets: &Path) -> Option<Self> {
        let bundle = Self::at(assets);
        [&bundle.checkpoint, &bundle.config, &bundle.source, &bundle.driving]
            .iter()
            .all(|p| p.is_file())
            .then_some(bundle)
    }
}
