//! The Live workspace: the photo of the Animate workspace follows a webcam (or a video file
//! standing in for one) in real time. Calibrate takes the current pose as neutral; the square the
//! model sees can be moved (drag) and resized, or follow the face; the animated face can be pasted
//! back into the photo; the result can be streamed to other apps as MJPEG. Frames the model has
//! no time for are dropped.

use eframe::egui;
use prioritycut_engine::animate::AnimateOptions;
use prioritycut_engine::faces::Framing;
use prioritycut_engine::live::{CameraInfo, CameraSource, CropBox};
use prioritycut_engine::worker::{Command, Event, Job, Worker};
use serde::{Deserialize, Serialize};

use super::panel::{Panel, PanelContext};
use super::widgets::{Dialogs, Pick, Picture, face_mode_choice, path_row};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    pub camera: Option<u32>,
    pub use_file: bool,
    pub file: String,
    pub mirror: bool,
    pub crop_x: f32,
    pub crop_y: f32,
    pub crop_size: f32,
    /// The crop square follows the face in the camera.
    pub follow_face: bool,
    /// Where the MJPEG stream listens when switched on (the switch itself is not kept: a
    /// port is never opened without asking).
    pub stream_address: String,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            camera: None,
            use_file: false,
            file: String::new(),
            mirror: true,
            crop_x: 0.5,
            crop_y: 0.5,
            crop_size: 0.8,
            follow_face: true,
            stream_address: "127.0.0.1:8765".into(),
        }
    }
}

#[derive(Debug)]
pub struct LivePanel {
    pub settings: LiveSettings,
    /// The worker's answer to ListCameras; `None` until it comes.
    cameras: Option<Vec<CameraInfo>>,
    cameras_asked: bool,
    pub running: bool,
    camera: Picture,
    result: Picture,
    camera_size: (u32, u32),
    crop_px: (u32, u32, u32),
    pub fps: f64,
    latency_ms: f64,
    dropped: u64,
    calibrated: bool,
    /// The face the square follows, in camera pixels, and whether it did this frame.
    face: Option<[f32; 4]>,
    following: bool,
    /// How the photo is framed in this run.
    framing: Option<Framing>,
    pub frames: u64,
    pub error: Option<String>,
    /// The stream switch, the URL served and its clients, or why it could not start.
    stream_on: bool,
    pub stream_url: Option<String>,
    stream_clients: usize,
    stream_error: Option<String>,
}

impl LivePanel {
    pub fn new(settings: LiveSettings) -> Self {
        Self {
            settings,
            cameras: None,
            cameras_asked: false,
            running: false,
            camera: Picture::default(),
            result: Picture::default(),
            camera_size: (0, 0),
            crop_px: (0, 0, 0),
            fps: 0.0,
            latency_ms: 0.0,
            dropped: 0,
            calibrated: false,
            face: None,
            following: false,
            framing: None,
            frames: 0,
            error: None,
            stream_on: false,
            stream_url: None,
            stream_clients: 0,
            stream_error: None,
        }
    }

    fn crop(&self) -> CropBox {
        CropBox {
            centre_x: self.settings.crop_x,
            centre_y: self.settings.crop_y,
            size: self.settings.crop_size,
        }
    }

    pub fn take_path(&mut self, pick: Pick, path: std::path::PathBuf) {
        if pick == Pick::CameraVideo {
            self.settings.file = path.display().to_string();
            self.settings.use_file = true;
        }
    }

    /// The chosen camera, or the video file when asked for or when there is no camera.
    fn source(&mut self) -> CameraSource {
        let cameras = self.cameras.as_deref().unwrap_or_default();
        match (self.settings.use_file, cameras.first()) {
            (false, Some(first)) => CameraSource::Webcam {
                index: self.settings.camera.unwrap_or(first.index),
            },
            _ => CameraSource::VideoFile(self.settings.file.trim().into()),
        }
    }

    /// Starts puppeteering with the Animate workspace's motion options.
    pub fn start(&mut self, worker: &Worker, options: AnimateOptions) {
        self.error = None;
        self.frames = 0;
        self.framing = None;
        worker.send(Command::StartLive {
            camera: self.source(),
            options,
        });
        self.send_view(worker);
        self.running = true;
    }

    fn send_view(&self, worker: &Worker) {
        worker.send(Command::SetLiveView {
            mirror: self.settings.mirror,
            crop: self.crop(),
            follow_face: self.settings.follow_face,
        });
    }

    /// Starts or stops serving results as MJPEG, as the switch says.
    fn send_stream(&self, worker: &Worker) {
        worker.send(Command::SetLiveStream(
            self.stream_on.then(|| self.settings.stream_address.trim().to_string()),
        ));
    }

    /// The camera, or a video file standing in for one (fixed while running).
    fn camera_choice_ui(&mut self, ui: &mut egui::Ui, dialogs: &Dialogs) {
        let cameras = self.cameras.clone();
        ui.add_enabled_ui(!self.running, |ui| {
            ui.horizontal(|ui| {
                let camera_choice = ui.radio_value(&mut self.settings.use_file, false, "Camera");
                let Some(cameras) = cameras else {
                    ui.spinner();
                    ui.label("looking for cameras…");
                    return;
                };
                if cameras.is_empty() {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        "no camera found on this machine: use a video file as the camera",
                    );
                } else {
                    let selected = self.settings.camera.unwrap_or(cameras[0].index);
                    let name = cameras
                        .iter()
                        .find(|c| c.index == selected)
                        .map_or("?".to_string(), |c| format!("{} ({})", c.name, c.index));
                    egui::ComboBox::from_id_salt("camera")
                        .selected_text(name)
                        .show_ui(ui, |ui| {
                            for camera in &cameras {
                                ui.selectable_value(
                                    &mut self.settings.camera,
                                    Some(camera.index),
                                    format!("{} ({})", camera.name, camera.index),
                                );
                            }
                        })
                        .response
                        .labelled_by(camera_choice.id);
                }
                if ui.button("⟳ look again").clicked() {
                    self.cameras = None;
                    self.cameras_asked = false;
                }
            });
            ui.horizontal(|ui| {
                ui.radio_value(&mut self.settings.use_file, true, "Video file as the camera");
                if path_row(ui, "", &mut self.settings.file, "any video the app reads") {
                    dialogs.open(Pick::CameraVideo);
                }
            });
        });
    }

    /// Start, stop, calibrate, and how the camera is seen.
    fn controls_ui(&mut self, ui: &mut egui::Ui, worker: &Worker, model_ready: bool, options: AnimateOptions) {
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.running && model_ready, egui::Button::new("▶ Start"))
                .clicked()
            {
                self.start(worker, options);
            }
            if ui.add_enabled(self.running, egui::Button::new("⏹ Stop")).clicked() {
                worker.send(Command::StopLive);
            }
            if ui
                .add_enabled(self.running, egui::Button::new("🎯 Calibrate"))
                .clicked()
            {
                worker.send(Command::Calibrate);
            }
            if ui.checkbox(&mut self.settings.mirror, "mirror").changed() {
                self.send_view(worker);
            }
            if ui
                .checkbox(&mut self.settings.follow_face, "follow the face")
                .on_hover_text("the square the model sees moves with your face (smoothed), so the puppet stays put when you move across the camera")
                .changed()
            {
                self.send_view(worker);
            }
            let following = self.settings.follow_face && self.following;
            if ui
                .add_enabled(
                    !following,
                    egui::Slider::new(&mut self.settings.crop_size, 0.2..=1.0).text("crop size"),
                )
                .changed()
            {
                self.send_view(worker);
            }
        });
    }

    /// What is missing, the rate and latency, and how the photo was framed.
    fn status_ui(&self, ui: &mut egui::Ui, model_ready: bool) {
        if !model_ready {
            ui.label("Load a model and a photo in the Animate workspace first.");
        }
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        if self.running || self.frames > 0 {
            ui.label(format!(
                "{:.1} fps | latency {:.0} ms | {} frames dropped | {}",
                self.fps,
                self.latency_ms,
                self.dropped,
                if self.calibrated {
                    "calibrated"
                } else {
                    "not calibrated"
                }
            ));
        }
        if let Some(framing) = &self.framing {
            let said = match &framing.source_face {
                Some((_, crop)) => format!("photo: the face square, {0}×{0} px", crop.side),
                None => "photo: the whole photo".to_string(),
            };
            ui.label(egui::RichText::new(said).weak());
            for note in &framing.notes {
                ui.colored_label(ui.visuals().warn_fg_color, note);
            }
        }
    }

    /// The camera with its crop square beside the moving photo.
    fn pictures_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let side = ((ui.available_width() - 30.0) / 2.0).clamp(120.0, 420.0);
        ui.horizontal(|ui| {
            let caption = if self.settings.follow_face {
                if self.following {
                    "camera (the square follows the face)"
                } else {
                    "camera (looking for a face)"
                }
            } else {
                "camera (drag the square)"
            };
            let rect = self.camera.show(ui, caption, side, "no camera frame yet");
            self.crop_overlay(ui, rect, worker);
            self.result.show(ui, "the photo, moving", side, "not started");
        });
    }

    /// The stream switch: results served as MJPEG for OBS, VLC or a video call's virtual camera.
    fn stream_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal(|ui| {
            if ui
                .checkbox(&mut self.stream_on, "stream to other apps (MJPEG) at")
                .on_hover_text("OBS: Sources → Media Source, untick Local File, input the address; OBS's virtual camera then feeds Zoom or Meet")
                .changed()
            {
                self.send_stream(worker);
            }
            ui.add_enabled(
                !self.stream_on,
                egui::TextEdit::singleline(&mut self.settings.stream_address)
                    .desired_width(140.0)
                    .hint_text("PORT or HOST:PORT"),
            )
            .on_hover_text("127.0.0.1 keeps the stream on this machine; 0.0.0.0 opens it to the network");
            if let Some(url) = self.stream_url.clone() {
                ui.hyperlink_to(&url, &url);
                if ui.small_button("copy").clicked() {
                    ui.ctx().copy_text(url);
                }
                ui.label(format!("{} client(s)", self.stream_clients));
            }
        });
        if let Some(error) = &self.stream_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// Draws the crop square over the camera picture and lets the user drag it.
    fn crop_overlay(&mut self, ui: &mut egui::Ui, rect: egui::Rect, worker: &Worker) {
        let (w, h) = self.camera_size;
        if w == 0 || h == 0 {
            return;
        }
        let scale = rect.width() / w as f32;
        let (x, y, side) = self.crop_px;
        let square = egui::Rect::from_min_size(
            rect.min + egui::vec2(x as f32 * scale, y as f32 * scale),
            egui::Vec2::splat(side as f32 * scale),
        );
        ui.painter().rect_stroke(
            square,
            0.0,
            egui::Stroke::new(2.0, egui::Color32::YELLOW),
            egui::StrokeKind::Inside,
        );
        if let Some(face) = self.face {
            self.camera.outline(ui, rect, face, egui::Color32::GREEN);
        }
        if self.settings.follow_face && self.following {
            return;
        }
        let response = ui.interact(rect, ui.scope_id().with("crop-drag"), egui::Sense::drag());
        if response.dragged() {
            let delta = response.drag_delta();
            self.settings.crop_x = (self.settings.crop_x + delta.x / rect.width()).clamp(0.0, 1.0);
            self.settings.crop_y = (self.settings.crop_y + delta.y / rect.height()).clamp(0.0, 1.0);
            self.send_view(worker);
        }
    }
}

impl Panel for LivePanel {
    fn on_event(&mut self, ctx: &egui::Context, event: &Event) {
        match event {
            Event::Live(frame) => {
                self.running = true;
                self.camera.set(ctx, "live-camera", &frame.camera);
                self.result.set(ctx, "live-result", &frame.result);
                self.camera_size = frame.camera.dimensions();
                self.crop_px = frame.crop;
                self.fps = frame.fps;
                self.latency_ms = frame.latency.as_secs_f64() * 1000.0;
                self.dropped = frame.dropped;
                self.calibrated = frame.calibrated;
                self.face = frame.face;
                self.following = frame.following;
                self.stream_clients = frame.stream_clients.unwrap_or(0);
                self.frames += 1;
            }
            Event::LiveStarted { framing } => self.framing = Some(framing.clone()),
            Event::LiveStream { url, error } => {
                self.stream_url = url.clone();
                self.stream_error = error.clone();
                self.stream_on = url.is_some();
                self.stream_clients = 0;
            }
            Event::LiveStopped { reason } => {
                self.running = false;
                self.error = reason.clone();
            }
            Event::Cameras(cameras) => self.cameras = Some(cameras.clone()),
            Event::Error {
                job: Job::Live,
                message,
            } => {
                self.running = false;
                self.error = Some(message.clone());
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PanelContext<'_>) {
        let (worker, dialogs) = (cx.worker, cx.dialogs);
        let model_ready = cx.photo.ready;
        let options = cx.photo.options;
        let face = &mut cx.photo.face;
        ui.heading("Live: puppeteer the photo");
        ui.label(
            "The photo and model of the Animate workspace follow the camera. Look straight at it and press \
             Calibrate: that pose becomes neutral.",
        );
        if !self.cameras_asked {
            // The worker asks the OS; the answer comes back as Event::Cameras.
            worker.send(Command::ListCameras);
            self.cameras_asked = true;
        }
        self.camera_choice_ui(ui, dialogs);
        self.controls_ui(ui, worker, model_ready, options);
        ui.add_enabled_ui(!self.running, |ui| {
            ui.horizontal(|ui| {
                ui.label("photo:");
                face_mode_choice(ui, face);
            });
        });
        self.stream_ui(ui, worker);
        self.status_ui(ui, model_ready);
        self.pictures_ui(ui, worker);
    }
}
