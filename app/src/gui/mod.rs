//! The desktop window: four workspaces (Animate, Train, Live, Evaluate) over one engine worker. The UI
//! talks to the engine only through [`prioritycut_engine::worker`]'s commands and events.

mod animate;
mod app;
mod evaluate;
mod live;
mod maps;
mod panel;
mod train;
mod widgets;

use std::path::PathBuf;

use eframe::egui;
use prioritycut_engine::backend::BackendChoice;

pub use app::{StudioApp, Workspace};
pub use maps::{MapLayer, render_on_cpu};

/// How the window starts.
#[derive(Debug, Clone)]
pub struct GuiOptions {
    pub backend: BackendChoice,
    pub workspace: Option<Workspace>,
    /// Save a screenshot of the window to this file after this many seconds, then close.
    pub screenshot: Option<(PathBuf, f64)>,
    /// Where the bundled sample lives.
    pub assets: PathBuf,
    /// Ignore remembered settings (start as on a fresh machine).
    pub fresh: bool,
    /// Start training this dataset into this run folder at once (with the Train fields' config).
    pub train: Option<(PathBuf, PathBuf)>,
    /// The config that training takes instead of the Train fields' (FOMM's or TPSMM's layout).
    pub train_config: Option<PathBuf>,
    /// Train only the AVD network of this trained TPSMM model (its config: `train_config`).
    pub train_avd_from: Option<PathBuf>,
    /// Start puppeteering with this video as the camera at once.
    pub live_video: Option<PathBuf>,
    /// Evaluate on this dataset at once (with the Evaluate fields' checkpoint).
    pub evaluate_dataset: Option<PathBuf>,
    /// Open the Animate workspace on this checkpoint (and config) and animate at once.
    pub model: Option<(PathBuf, Option<PathBuf>)>,
}

impl GuiOptions {
    pub fn new(backend: BackendChoice) -> Self {
        Self {
            backend,
            workspace: None,
            screenshot: None,
            assets: crate::assets::default_assets(),
            fresh: false,
            train: None,
            train_config: None,
            train_avd_from: None,
            live_video: None,
            evaluate_dataset: None,
            model: None,
        }
    }
}

/// Opens the window and runs until it is closed.
pub fn run(options: GuiOptions) -> anyhow::Result<()> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("PriorityCut Studio")
            .with_app_id("prioritycut-studio")
            .with_inner_size([1280.0, 880.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "PriorityCut Studio",
        native,
        Box::new(move |cc| Ok(Box::new(StudioApp::new(cc, options)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
