//! Small building blocks of the panels: images as textures, images with keypoints, rows of
//! "path + browse" inputs, and file dialogs that do not block the UI thread.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};

use eframe::egui;
use image::RgbImage;
use prioritycut_engine::faces::FaceMode;

/// An image shown as a texture, uploaded again only when it changes.
#[derive(Default)]
pub struct Picture {
    handle: Option<egui::TextureHandle>,
    size: [usize; 2],
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picture")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Picture {
    pub fn set(&mut self, ctx: &egui::Context, name: &str, image: &RgbImage) {
        let size = [image.width() as usize, image.height() as usize];
        let colour = egui::ColorImage::from_rgb(size, image.as_raw());
        match &mut self.handle {
            Some(handle) => handle.set(colour, egui::TextureOptions::LINEAR),
            None => self.handle = Some(ctx.load_texture(name, colour, egui::TextureOptions::LINEAR)),
        }
        self.size = size;
    }

    pub fn clear(&mut self) {
        self.handle = None;
    }

    pub fn is_set(&self) -> bool {
        self.handle.is_some()
    }

    /// Outlines `bbox` (`[x0, y0, x1, y1]` in the picture's pixels) over the picture drawn in
    /// `rect` (what [`Picture::show`] returned).
    pub fn outline(&self, ui: &egui::Ui, rect: egui::Rect, bbox: [f32; 4], colour: egui::Color32) {
        let [w, h] = self.size;
        if self.handle.is_none() || w == 0 || h == 0 {
            return;
        }
        let at = |x: f32, y: f32| rect.min + egui::vec2(x / w as f32 * rect.width(), y / h as f32 * rect.height());
        let outline = egui::Rect::from_two_pos(at(bbox[0], bbox[1]), at(bbox[2], bbox[3]));
        ui.painter().with_clip_rect(rect).rect_stroke(
            outline,
            0.0,
            egui::Stroke::new(1.5, colour),
            egui::StrokeKind::Middle,
        );
    }

    /// Draws the picture fitted in `side × side` (aspect kept), with `caption` under it; a grey
    /// box saying `empty` when there is no picture.
    pub fn show(&self, ui: &mut egui::Ui, caption: &str, side: f32, empty: &str) -> egui::Rect {
        ui.vertical(|ui| {
            let rect = match &self.handle {
                Some(handle) => {
                    let [w, h] = self.size;
                    let scale = side / w.max(h).max(1) as f32;
                    let size = egui::vec2(w as f32 * scale, h as f32 * scale);
                    ui.add(egui::Image::new((handle.id(), size)).fit_to_exact_size(size))
                        .rect
                }
                None => {
                    let (rect, _) = ui.allocate_exact_size(egui::vec2(side, side), egui::Sense::hover());
                    ui.painter().rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                    // A label, not painted text, so screen readers (and UI tests) see it.
                    ui.put(rect, egui::Label::new(egui::RichText::new(empty).weak()));
                    rect
                }
            };
            ui.label(caption);
            rect
        })
        .inner
    }
}

/// FOMM's keypoint colours (a rainbow over the keypoints).
pub fn keypoint_colour(i: usize, n: usize) -> egui::Color32 {
    let h = i as f32 / n.max(1) as f32 * 0.83;
    egui::ecolor::Hsva::new(h, 0.9, 1.0, 1.0).into()
}

/// Draws keypoints ((x, y) in [-1, 1]) over an image drawn in `rect`.
pub fn draw_keypoints(ui: &egui::Ui, rect: egui::Rect, points: &[[f32; 2]]) {
    let painter = ui.painter_at(rect);
    for (i, p) in points.iter().enumerate() {
        let pos = egui::pos2(
            rect.left() + (p[0] + 1.0) / 2.0 * rect.width(),
            rect.top() + (p[1] + 1.0) / 2.0 * rect.height(),
        );
        painter.circle(
            pos,
            3.5,
            keypoint_colour(i, points.len()),
            egui::Stroke::new(1.0, egui::Color32::BLACK),
        );
    }
}

/// What a file dialog is picking, so its answer goes to the right field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    Checkpoint,
    ModelConfig,
    Source,
    Driving,
    ExportMp4,
    ExportGif,
    Dataset,
    TrainConfig,
    RunFolder,
    Vgg19,
    /// The trained TPSMM model AVD training starts from.
    TrainedModel,
    CameraVideo,
    EvalCheckpoint,
    EvalConfig,
    EvalDataset,
    EvalMasks,
}

impl Pick {
    fn open(self) -> Option<PathBuf> {
        let dialog = rfd::FileDialog::new();
        match self {
            Pick::Checkpoint | Pick::EvalCheckpoint | Pick::TrainedModel => dialog
                .add_filter("checkpoints", &["bpk", "tar", "pth"])
                .set_title("Open a checkpoint (.pth.tar, .bpk)")
                .pick_file(),
            Pick::ModelConfig | Pick::TrainConfig | Pick::EvalConfig => {
                dialog.add_filter("YAML", &["yaml", "yml"]).pick_file()
            }
            Pick::Source => dialog
                .add_filter("images", &["png", "jpg", "jpeg", "bmp", "webp"])
                .set_title("Choose the photo to animate")
                .pick_file(),
            Pick::Driving | Pick::CameraVideo => dialog
                .add_filter("videos", &["mp4", "mov", "webm", "mkv", "avi", "gif", "png"])
                .set_title("Choose a driving video")
                .pick_file(),
            Pick::ExportMp4 => dialog
                .add_filter("MP4", &["mp4"])
                .set_file_name("animation.mp4")
                .save_file(),
            Pick::ExportGif => dialog
                .add_filter("GIF", &["gif"])
                .set_file_name("animation.gif")
                .save_file(),
            Pick::Dataset | Pick::EvalDataset => dialog
                .set_title("Choose a dataset folder (with train/ and test/)")
                .pick_folder(),
            Pick::RunFolder => dialog.set_title("Choose the run folder").pick_folder(),
            Pick::EvalMasks => dialog
                .set_title("Choose the salient masks folder (<video>/NNNN.png)")
                .pick_folder(),
            Pick::Vgg19 => dialog.add_filter("VGG19 weights", &["pth", "safetensors"]).pick_file(),
        }
    }
}

/// File dialogs on their own threads (they block while open); answers are polled each frame.
#[derive(Debug)]
pub struct Dialogs {
    sender: Sender<(Pick, PathBuf)>,
    receiver: Receiver<(Pick, PathBuf)>,
    ctx: egui::Context,
}

impl Dialogs {
    pub fn new(ctx: &egui::Context) -> Self {
        let (sender, receiver) = channel();
        Self {
            sender,
            receiver,
            ctx: ctx.clone(),
        }
    }

    pub fn open(&self, pick: Pick) {
        let sender = self.sender.clone();
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            if let Some(path) = pick.open() {
                let _ = sender.send((pick, path));
                ctx.request_repaint();
            }
        });
    }

    /// Answers that arrived since the last call.
    pub fn answers(&self) -> Vec<(Pick, PathBuf)> {
        self.receiver.try_iter().collect()
    }
}

/// A labelled path field with a "Browse…" button; returns true when Browse was clicked.
pub fn path_row(ui: &mut egui::Ui, label: &str, path: &mut String, hint: &str) -> bool {
    ui.horizontal(|ui| {
        ui.label(label);
        ui.add(egui::TextEdit::singleline(path).hint_text(hint).desired_width(320.0));
        ui.button("Browse…").clicked()
    })
    .inner
}

/// A progress bar with its text, or nothing.
pub fn progress(ui: &mut egui::Ui, progress: Option<(usize, usize)>, what: &str) {
    if let Some((done, total)) = progress {
        if total == 0 {
            // Nothing to count yet: a spinner and what is being done.
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("{what}…"));
            });
            return;
        }
        let fraction = done as f32 / total as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .text(format!("{what} {done}/{total}"))
                .animate(true),
        );
    }
}

/// The face modes (`--face`) as radio buttons, for Animate and Live alike.
pub fn face_mode_choice(ui: &mut egui::Ui, face: &mut FaceMode) {
    for (mode, hint) in [
        (
            FaceMode::Auto,
            "find the face, animate the square around it and paste it back into the photo (its own size); no face: the whole photo",
        ),
        (FaceMode::Crop, "only the animated face square, at the model's size"),
        (
            FaceMode::Off,
            "the whole photo (and frames), squeezed to the model's size",
        ),
    ] {
        ui.radio_value(face, mode, mode.name()).on_hover_text(hint);
    }
}
