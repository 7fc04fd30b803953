//! The Animate workspace: a model, a photo and a driving video (chosen, or dropped on the
//! window) → the photo animated, previewed beside its inputs with a scrubber, exported as MP4 or
//! GIF.

use eframe::egui;
use image::RgbImage;
use prioritycut_engine::animate::AnimateOptions;
use prioritycut_engine::config::AnimateParams;
use prioritycut_engine::data::Soundtrack;
use prioritycut_engine::faces::{FaceMode, Framing};
use prioritycut_engine::worker::{Command, Event, Frames, Job, Worker};
use serde::{Deserialize, Serialize};

use super::panel::{Panel, PanelContext, PhotoContext};
use super::widgets::{Pick, Picture, face_mode_choice, path_row, progress};

/// What is remembered between sessions.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AnimateSettings {
    pub checkpoint: String,
    pub config: String,
    pub source: String,
    pub driving: String,
    /// `None`: the model config's `animate_params`, as the CLI without flags.
    pub relative: Option<bool>,
    pub adapt_scale: Option<bool>,
    pub best_frame: bool,
    /// Move by the model's AVD network where it has one (`--avd`).
    pub avd: bool,
    /// Face-aware framing (`--face`).
    pub face: FaceMode,
    pub export: String,
}

#[derive(Default, Debug)]
pub struct AnimatePanel {
    pub settings: AnimateSettings,
    pub model: Option<String>,
    /// The loaded model's own motion transfer: what the options show until the user changes them.
    model_animate: Option<AnimateParams>,
    /// The loaded model has an AVD network (TPSMM's disentangled motion).
    model_avd: bool,
    source: Picture,
    driving: Frames,
    driving_fps: f64,
    result: Frames,
    result_fps: f64,
    driving_picture: Picture,
    result_picture: Picture,
    /// The frame the scrubber is on, and the one the pictures show.
    frame: usize,
    shown: Option<usize>,
    playing: bool,
    last_advance: f64,
    pub progress: Option<(Job, usize, usize)>,
    pub status: Option<String>,
    pub error: Option<String>,
    /// The photo and video have changed since the last animation.
    stale: bool,
    /// Where the last animation found the faces.
    framing: Option<Framing>,
}

impl AnimatePanel {
    pub fn new(settings: AnimateSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    pub fn options(&self) -> AnimateOptions {
        AnimateOptions {
            relative: self.settings.relative,
            adapt_scale: self.settings.adapt_scale,
            best_frame: self.settings.best_frame,
            disentangled: self.settings.avd && self.model_avd,
            face: self.settings.face,
        }
    }

    /// Relative/absolute and adapt scale start as the model's config says (vox-256: relative,
    /// not adapted); a choice the user makes is kept until "model defaults".
    fn motion_options(&mut self, ui: &mut egui::Ui) {
        let defaults = self.model_animate.clone().unwrap_or_else(AnimateParams::new);
        ui.horizontal(|ui| {
            let relative = self.settings.relative.unwrap_or(defaults.use_relative_movement);
            let avd = self.settings.avd && self.model_avd;
            if ui.radio(relative && !avd, "relative motion").clicked() {
                self.settings.relative = Some(true);
                self.settings.avd = false;
            }
            if ui.radio(!relative && !avd, "absolute").clicked() {
                self.settings.relative = Some(false);
                self.settings.avd = false;
            }
            if self.model_avd
                && ui
                    .radio(avd, "AVD")
                    .on_hover_text("the model's AVD network: the photo keeps its proportions, takes the driving pose")
                    .clicked()
            {
                self.settings.avd = true;
            }
            let mut adapt = self.settings.adapt_scale.unwrap_or(defaults.adapt_movement_scale);
            if ui.checkbox(&mut adapt, "adapt movement scale").changed() {
                self.settings.adapt_scale = Some(adapt);
            }
            ui.checkbox(&mut self.settings.best_frame, "start from the best-matching frame");
            ui.label("face:");
            face_mode_choice(ui, &mut self.settings.face);
            let changed = self.settings.relative.is_some() || self.settings.adapt_scale.is_some() || self.settings.avd;
            if ui
                .add_enabled(changed, egui::Button::new("model defaults"))
                .on_hover_text("relative motion and movement scale as the model's config sets them")
                .clicked()
            {
                self.settings.relative = None;
                self.settings.adapt_scale = None;
                self.settings.avd = false;
            }
        });
    }

    pub fn has_result(&self) -> bool {
        !self.result.is_empty()
    }

    pub fn result_frames(&self) -> usize {
        self.result.len()
    }

    /// The result's frame size.
    pub fn result_size(&self) -> Option<(u32, u32)> {
        self.result.first().map(RgbImage::dimensions)
    }

    /// Where the last animation found the faces.
    pub fn framing(&self) -> Option<&Framing> {
        self.framing.as_ref()
    }

    pub fn driving_frames(&self) -> usize {
        self.driving.len()
    }

    /// What the other workspaces share of this one, for a frame.
    pub fn photo_context(&self) -> PhotoContext {
        PhotoContext {
            ready: self.model.is_some() && self.source_loaded(),
            options: self.options(),
            face: self.settings.face,
            model: (!self.settings.checkpoint.is_empty())
                .then(|| (self.settings.checkpoint.clone(), self.settings.config.clone())),
        }
    }

    pub fn source_loaded(&self) -> bool {
        self.source.is_set()
    }

    /// Loads the model, photo and video the fields name.
    pub fn load_all(&mut self, worker: &Worker) {
        self.load_model(worker);
        for (path, command) in [
            (
                &self.settings.source,
                Command::LoadSource as fn(std::path::PathBuf) -> Command,
            ),
            (&self.settings.driving, Command::LoadDriving),
        ] {
            if !path.trim().is_empty() {
                worker.send(command(path.trim().into()));
            }
        }
    }

    /// Loads everything and animates (the bundled sample): the worker runs commands in order,
    /// so the animation starts once the loads are done.
    pub fn load_all_and_animate(&mut self, worker: &Worker) {
        self.load_all(worker);
        worker.send(Command::Animate(self.options()));
    }

    fn load_model(&mut self, worker: &Worker) {
        let config = self.settings.config.trim();
        worker.send(Command::LoadModel {
            checkpoint: self.settings.checkpoint.trim().into(),
            config: (!config.is_empty()).then(|| config.into()),
        });
        self.status = Some("loading the model…".into());
    }

    /// A file chosen in a dialog or dropped on the window.
    pub fn take_path(&mut self, pick: Pick, path: std::path::PathBuf, worker: &Worker) {
        let text = path.display().to_string();
        match pick {
            Pick::Checkpoint => {
                self.settings.checkpoint = text;
                self.load_model(worker);
            }
            Pick::ModelConfig => self.settings.config = text,
            Pick::Source => {
                self.settings.source = text;
                worker.send(Command::LoadSource(path));
            }
            Pick::Driving => {
                self.settings.driving = text;
                worker.send(Command::LoadDriving(path));
            }
            Pick::ExportMp4 | Pick::ExportGif => worker.send(Command::Export(path)),
            _ => {}
        }
    }

    fn preview(&mut self, ui: &mut egui::Ui) {
        let count = self.result.len().max(self.driving.len());
        if self.playing && count > 0 {
            let now = ui.input(|i| i.time);
            let fps = if self.result.is_empty() {
                self.driving_fps
            } else {
                self.result_fps
            }
            .max(1.0);
            if now - self.last_advance >= 1.0 / fps {
                self.frame = (self.frame + 1) % count;
                self.last_advance = now;
            }
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs_f64(1.0 / fps));
        }
        if self.shown != Some(self.frame) {
            if let Some(frame) = self.driving.get(self.frame) {
                self.driving_picture.set(ui.ctx(), "animate-driving", frame);
            }
            match self.result.get(self.frame) {
                Some(frame) => self.result_picture.set(ui.ctx(), "animate-result", frame),
                None => self.result_picture.clear(),
            }
            self.shown = Some(self.frame);
        }
        let side = ((ui.available_width() - 40.0) / 3.0).clamp(96.0, 320.0);
        // The faces the last animation found (green) and the squares it animated (yellow).
        let framing = self.framing.as_ref().filter(|_| !self.stale);
        ui.horizontal(|ui| {
            let photo = self.source.show(ui, "photo", side, "no photo");
            let driving = self.driving_picture.show(ui, "driving", side, "no driving video");
            self.result_picture.show(ui, "result", side, "not animated yet");
            if let Some((face, crop)) = framing.and_then(|f| f.source_face.as_ref()) {
                self.source.outline(ui, photo, face.bbox, egui::Color32::GREEN);
                self.source.outline(ui, photo, crop.bbox(), egui::Color32::YELLOW);
            }
            if let Some((track, crop)) = framing.and_then(|f| f.driving_face.as_ref()) {
                self.driving_picture
                    .outline(ui, driving, track.bbox, egui::Color32::GREEN);
                self.driving_picture
                    .outline(ui, driving, crop.bbox(), egui::Color32::YELLOW);
            }
        });
        if framing.is_some_and(|f| f.source_face.is_some() || f.driving_face.is_some()) {
            ui.label(egui::RichText::new("green: the face found; yellow: the square the model animated").weak());
        }
        if count > 0 {
            ui.horizontal(|ui| {
                if ui.button(if self.playing { "⏸" } else { "▶" }).clicked() {
                    self.playing = !self.playing;
                }
                let mut frame = self.frame;
                ui.add(egui::Slider::new(&mut frame, 0..=count - 1).text("frame"));
                if frame != self.frame {
                    self.frame = frame;
                    self.playing = false;
                }
            });
        }
    }
}

impl Panel for AnimatePanel {
    fn on_event(&mut self, ctx: &egui::Context, event: &Event) {
        match event {
            Event::ModelLoaded {
                description,
                animate,
                disentangled,
                moved,
                ..
            } => {
                self.model = Some(description.clone());
                self.model_animate = Some(animate.clone());
                self.model_avd = *disentangled;
                self.status = Some(format!("model: {description}"));
                // The same model on another device: the last animation still stands.
                self.stale |= !moved;
            }
            Event::SourceLoaded { image, .. } => {
                self.source.set(ctx, "animate-source", image);
                self.stale = true;
            }
            Event::DrivingLoaded { frames, fps, .. } => {
                self.driving = frames.clone();
                self.driving_fps = *fps;
                self.frame = 0;
                self.shown = None;
                self.stale = true;
                self.status = Some(format!("driving video: {} frames at {fps:.1} fps", frames.len()));
            }
            Event::Progress { job, done, total } if matches!(job, Job::Animate | Job::Export | Job::PrepareGpu) => {
                self.progress = Some((*job, *done, *total));
            }
            Event::AnimationReady {
                frames,
                fps,
                initial_frame,
                framing,
                seconds,
            } => {
                self.framing = Some(framing.clone());
                self.result = frames.clone();
                self.result_fps = *fps;
                self.frame = 0;
                self.shown = None;
                self.playing = true;
                self.progress = None;
                self.stale = false;
                self.error = None;
                let mut status = format!(
                    "animated {} frames in {seconds:.1} s (relative motion from driving frame {initial_frame})",
                    frames.len()
                );
                for note in &framing.notes {
                    status.push_str(&format!("; {note}"));
                }
                self.status = Some(status);
            }
            Event::Exported {
                path,
                frames,
                soundtrack,
            } => {
                self.progress = None;
                let sound = match soundtrack {
                    Soundtrack::Copied { codec, seconds } => {
                        format!(", with {seconds:.1} s of the driving video's {codec} sound")
                    }
                    Soundtrack::LeftOut(why) => format!(" (no sound: {why})"),
                    Soundtrack::NotAsked => String::new(),
                };
                self.status = Some(format!("exported {frames} frames to {}{sound}", path.display()));
            }
            Event::Cancelled(job) if matches!(job, Job::Animate | Job::Export) => {
                self.progress = None;
                self.status = Some(format!("{} cancelled", job.describe()));
            }
            Event::Error {
                job: Job::LoadModel | Job::LoadSource | Job::LoadDriving | Job::Animate | Job::Export,
                message,
            } => {
                self.progress = None;
                self.error = Some(message.clone());
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PanelContext<'_>) {
        let (worker, dialogs) = (cx.worker, cx.dialogs);
        ui.heading("Animate a photo");
        ui.label("Drop a photo and a driving video on the window, or choose them; then Animate.");
        ui.add_space(4.0);
        egui::Grid::new("animate-inputs")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                if path_row(
                    ui,
                    "Model",
                    &mut self.settings.checkpoint,
                    "vox-cpk.pth.tar, a .bpk, or a run folder",
                ) {
                    dialogs.open(Pick::Checkpoint);
                }
                if ui.button("Load model").clicked() {
                    self.load_model(worker);
                }
                ui.end_row();
                if path_row(
                    ui,
                    "Config",
                    &mut self.settings.config,
                    "vox-256.yaml (optional for runs)",
                ) {
                    dialogs.open(Pick::ModelConfig);
                }
                ui.label(self.model.as_deref().unwrap_or("no model loaded"));
                ui.end_row();
                if path_row(ui, "Photo", &mut self.settings.source, "a .png or .jpg") {
                    dialogs.open(Pick::Source);
                }
                if ui.button("Load photo").clicked() {
                    worker.send(Command::LoadSource(self.settings.source.trim().into()));
                }
                ui.end_row();
                if path_row(
                    ui,
                    "Driving video",
                    &mut self.settings.driving,
                    ".mp4, .mov, .webm, .gif or a folder",
                ) {
                    dialogs.open(Pick::Driving);
                }
                if ui.button("Load video").clicked() {
                    worker.send(Command::LoadDriving(self.settings.driving.trim().into()));
                }
                ui.end_row();
            });
        self.motion_options(ui);
        ui.horizontal(|ui| {
            let busy = self.progress.is_some();
            if ui.add_enabled(!busy, egui::Button::new("▶ Animate")).clicked() {
                self.error = None;
                worker.send(Command::Animate(self.options()));
            }
            if ui.add_enabled(busy, egui::Button::new("Cancel")).clicked() {
                worker.send(Command::Cancel);
            }
            if self.stale && self.has_result() {
                ui.label("(inputs changed: animate again)");
            }
        });
        if let Some((job, done, total)) = self.progress {
            progress(ui, Some((done, total)), job.describe());
        }
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        } else if let Some(status) = &self.status {
            ui.label(status);
        }
        ui.separator();
        self.preview(ui);
        ui.separator();
        ui.horizontal(|ui| {
            let can = self.has_result() && self.progress.is_none();
            ui.label("Save the result as");
            ui.add(
                egui::TextEdit::singleline(&mut self.settings.export)
                    .hint_text("result.mp4 or result.gif")
                    .desired_width(260.0),
            );
            let path = self.settings.export.trim().to_string();
            if ui
                .add_enabled(can && !path.is_empty(), egui::Button::new("Export"))
                .clicked()
            {
                worker.send(Command::Export(path.into()));
            }
            if ui.add_enabled(can, egui::Button::new("Save as MP4…")).clicked() {
                dialogs.open(Pick::ExportMp4);
            }
            if ui.add_enabled(can, egui::Button::new("Save as GIF…")).clicked() {
                dialogs.open(Pick::ExportGif);
            }
        });
    }
}
