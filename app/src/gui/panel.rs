//! The one shape of the four workspaces (as egui's demo app gives every demo one `DemoApp` trait):
//! the worker's events in, a frame of UI out, with the same context for each.

use eframe::egui;
use prioritycut_engine::animate::AnimateOptions;
use prioritycut_engine::faces::FaceMode;
use prioritycut_engine::worker::{Event, Worker};

use super::maps::MapPainter;
use super::widgets::Dialogs;

/// A workspace of the window.
pub trait Panel {
    /// Every event of the worker, whichever workspace shows, in order.
    fn on_event(&mut self, ctx: &egui::Context, event: &Event);

    /// The workspace's UI for this frame.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PanelContext<'_>);
}

/// What a panel works with besides its own state.
pub struct PanelContext<'a> {
    /// The engine; the window shows no workspace without one.
    pub worker: &'a Worker,
    pub dialogs: &'a Dialogs,
    pub maps: &'a mut MapPainter,
    /// The Animate workspace's model and photo, which Live puppeteers and Evaluate offers.
    pub photo: PhotoContext,
}

/// The Animate workspace's choices that the other workspaces share, copied for one frame; the
/// window writes `face` back to the Animate workspace if a panel changed it.
#[derive(Debug, Clone)]
pub struct PhotoContext {
    /// A model and a photo are loaded.
    pub ready: bool,
    pub options: AnimateOptions,
    pub face: FaceMode,
    /// The model's checkpoint and config, if one is chosen.
    pub model: Option<(String, String)>,
}
