//! The eframe app: four workspaces over one engine worker. Events from the worker are drained
//! every frame (the worker wakes the UI when one arrives); the UI never waits on the engine.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eframe::egui;
use prioritycut_engine::backend::{BackendChoice, DeviceOption};
use prioritycut_engine::data::video::{IMAGE_EXTENSIONS, VIDEO_CONTAINERS, extension};
use prioritycut_engine::worker::{Command, Event, Job, Worker};
use serde::{Deserialize, Serialize};

use super::GuiOptions;
use super::animate::{AnimatePanel, AnimateSettings};
use super::evaluate::{EvaluatePanel, EvaluateSettings};
use super::live::{LivePanel, LiveSettings};
use super::maps::{MapPainter, MapResources};
use super::panel::{Panel, PanelContext};
use super::train::{TrainPanel, TrainSettings};
use super::widgets::{Dialogs, Pick};
use crate::assets::Bundle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Workspace {
    #[default]
    Animate,
    Train,
    Live,
    Evaluate,
}

impl Workspace {
    pub const ALL: [Workspace; 4] = [
        Workspace::Animate,
        Workspace::Train,
        Workspace::Live,
        Workspace::Evaluate,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Workspace::Animate => "🎬 Animate",
            Workspace::Train => "🏋 Train",
            Workspace::Live => "📷 Live",
            Workspace::Evaluate => "📊 Evaluate",
        }
    }
}

impl std::str::FromStr for Workspace {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "animate" => Ok(Self::Animate),
            "train" => Ok(Self::Train),
            "live" => Ok(Self::Live),
            "evaluate" | "eval" => Ok(Self::Evaluate),
            other => Err(format!("unknown workspace '{other}' (animate, train, live, evaluate)")),
        }
    }
}

/// Everything remembered between sessions.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
struct Settings {
    workspace: Workspace,
    animate: AnimateSettings,
    train: TrainSettings,
    live: LiveSettings,
    evaluate: EvaluateSettings,
}

pub struct StudioApp {
    worker: Option<Worker>,
    events: Option<Receiver<Event>>,
    backend: String,
    /// What the device menu offers (the worker's answer to `ListDevices`).
    devices: Vec<DeviceOption>,
    /// The device asked for and not yet open, while switching.
    switching: Option<BackendChoice>,
    /// What the device in use was chosen as (the start's `--backend`, then the menu's choices).
    device_choice: BackendChoice,
    pub workspace: Workspace,
    pub animate: AnimatePanel,
    pub train: TrainPanel,
    pub live: LivePanel,
    pub evaluate: EvaluatePanel,
    dialogs: Dialogs,
    maps: MapPainter,
    pub log: Vec<String>,
    options: GuiOptions,
    started: Instant,
    screenshot_requested: bool,
    /// Filled by egui's screenshot callback, saved on the next frame.
    screenshot_taken: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
}

impl std::fmt::Debug for StudioApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudioApp")
            .field("backend", &self.backend)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl StudioApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: GuiOptions) -> Self {
        let gpu = MapResources::install(cc.wgpu_render_state.as_ref());
        let mut settings: Settings = cc
            .storage
            .and_then(|storage| eframe::get_value(storage, eframe::APP_KEY))
            .unwrap_or_default();
        if options.fresh {
            settings = Settings::default();
        }
        if let Some(workspace) = options.workspace {
            settings.workspace = workspace;
        }
        let mut log = Vec::new();
        let ctx = cc.egui_ctx.clone();
        let (worker, events) = match Worker::spawn(options.backend, move || ctx.request_repaint()) {
            Ok((worker, events)) => (Some(worker), Some(events)),
            Err(error) => {
                log.push(format!("error: the engine could not start: {error}"));
                (None, None)
            }
        };
        if let Some(worker) = &worker {
            // Face-aware animation's detector, bundled; sent first so Animate has it.
            worker.send(Command::LoadFaceDetector(Bundle::at(&options.assets).face_weights));
            worker.send(Command::ListDevices);
        }
        let bundle = Bundle::found_in(&options.assets);
        let first_run = settings.animate.checkpoint.is_empty();
        if first_run && let Some(bundle) = &bundle {
            let a = &mut settings.animate;
            a.checkpoint = bundle.checkpoint.display().to_string();
            a.config = bundle.config.display().to_string();
            a.source = bundle.source.display().to_string();
            a.driving = bundle.driving.display().to_string();
            let t = &mut settings.train;
            if t.config.is_empty() {
                t.config = bundle.dataset_config.display().to_string();
            }
            let e = &mut settings.evaluate;
            if e.checkpoint.is_empty() {
                e.checkpoint = bundle.checkpoint.display().to_string();
                e.config = bundle.config.display().to_string();
            }
        }
        if first_run && bundle.is_none() {
            log.push(format!("no bundled sample found in {}", options.assets.display()));
        }
        let mut animate = AnimatePanel::new(settings.animate);
        if let Some((checkpoint, config)) = &options.model {
            animate.settings.checkpoint = checkpoint.display().to_string();
            animate.settings.config = config.as_ref().map(|c| c.display().to_string()).unwrap_or_default();
        }
        if let Some(worker) = &worker
            && !animate.settings.checkpoint.is_empty()
        {
            // The bundled sample animates at once, and a model named on the command line; a
            // user's last files are only loaded.
            if first_run || options.model.is_some() {
                animate.load_all_and_animate(worker);
            } else {
                animate.load_all(worker);
            }
        }
        let mut train = TrainPanel::new(settings.train);
        if let (Some(worker), Some((dataset, run))) = (&worker, &options.train) {
            train.settings.dataset = dataset.display().to_string();
            train.settings.run = run.display().to_string();
            if let Some(config) = &options.train_config {
                train.settings.config = config.display().to_string();
            }
            train.settings.avd = options.train_avd_from.is_some();
            if let Some(model) = &options.train_avd_from {
                train.settings.trained_model = model.display().to_string();
            }
            train.start(worker, false);
        }
        let mut evaluate = EvaluatePanel::new(settings.evaluate, Bundle::at(&options.assets).face_weights);
        if let (Some(worker), Some(dataset)) = (&worker, &options.evaluate_dataset) {
            evaluate.settings.dataset = dataset.display().to_string();
            evaluate.start(worker);
        }
        let mut live = LivePanel::new(settings.live);
        if let Some(video) = &options.live_video {
            live.settings.use_file = true;
            live.settings.file = video.display().to_string();
        }
        Self {
            worker,
            events,
            backend: String::new(),
            devices: Vec::new(),
            switching: None,
            device_choice: options.backend,
            workspace: settings.workspace,
            animate,
            train,
            live,
            evaluate,
            dialogs: Dialogs::new(&cc.egui_ctx),
            maps: MapPainter::new(gpu),
            log,
            options,
            started: Instant::now(),
            screenshot_requested: false,
            screenshot_taken: Arc::default(),
        }
    }

    pub fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }

    fn settings(&self) -> Settings {
        Settings {
            workspace: self.workspace,
            animate: self.animate.settings.clone(),
            train: self.train.settings.clone(),
            live: self.live.settings.clone(),
            evaluate: self.evaluate.settings.clone(),
        }
    }

    /// Takes every event the worker has sent.
    pub fn drain_events(&mut self, ctx: &egui::Context) {
        let Some(events) = &self.events else { return };
        let events: Vec<Event> = events.try_iter().collect();
        for event in events {
            match &event {
                Event::Backend(description) => {
                    if let Some(choice) = self.switching.take() {
                        self.device_choice = choice;
                        self.log.push(format!("now computing on {description}"));
                    }
                    self.backend = description.clone();
                }
                Event::Devices(devices) => self.devices = devices.clone(),
                Event::DeviceFallback { reason } => {
                    self.device_choice = BackendChoice::Flex;
                    self.log
                        .push(format!("{reason}: moved to the CPU (flex), and the work goes on there"));
                }
                Event::Error { job, message } => {
                    if *job == Job::Device && self.switching.take().is_some() {
                        // The device in use stays: say it again where the attempt was shown.
                        if let Some(worker) = &self.worker {
                            self.backend = worker.device().to_string();
                        }
                    }
                    self.log.push(format!("error ({}): {message}", job.describe()))
                }
                Event::Exported { path, frames, .. } => {
                    self.log.push(format!("exported {frames} frames to {}", path.display()))
                }
                _ => {}
            }
            let panels: [&mut dyn Panel; 4] = [&mut self.animate, &mut self.train, &mut self.live, &mut self.evaluate];
            for panel in panels {
                panel.on_event(ctx, &event);
            }
        }
        let excess = self.log.len().saturating_sub(500);
        self.log.drain(..excess);
    }

    /// The top bar's device menu: every device this machine offers; choosing one asks the
    /// worker to move onto it (the worker refuses while training, evaluating or live).
    fn device_menu(&mut self, ui: &mut egui::Ui) {
        let Some(worker) = &self.worker else { return };
        let mut chosen = None;
        ui.add_enabled_ui(self.switching.is_none(), |ui| {
            ui.menu_button("Device", |ui| {
                if self.devices.is_empty() {
                    ui.label("looking for devices…");
                }
                for option in &self.devices {
                    let current = option.choice == self.device_choice;
                    if ui.selectable_label(current, &option.label).clicked() {
                        chosen = (!current).then(|| option.clone());
                        ui.close();
                    }
                }
            })
            .response
            .on_hover_text("compute on another device: the loaded model moves there");
        });
        if self.switching.is_some() {
            ui.spinner();
        }
        if let Some(option) = chosen {
            worker.send(Command::UseDevice(option.choice));
            self.backend = format!("opening {}…", option.label);
            self.switching = Some(option.choice);
        }
    }

    /// A file chosen in a dialog, or dropped on the window.
    fn take_path(&mut self, pick: Pick, path: PathBuf) {
        let Some(worker) = &self.worker else { return };
        match pick {
            Pick::Checkpoint | Pick::ModelConfig | Pick::Source | Pick::Driving | Pick::ExportMp4 | Pick::ExportGif => {
                self.animate.take_path(pick, path, worker)
            }
            Pick::Dataset | Pick::TrainConfig | Pick::RunFolder | Pick::Vgg19 | Pick::TrainedModel => {
                self.train.take_path(pick, path)
            }
            Pick::CameraVideo => self.live.take_path(pick, path),
            Pick::EvalCheckpoint | Pick::EvalConfig | Pick::EvalDataset | Pick::EvalMasks => {
                self.evaluate.take_path(pick, path)
            }
        }
    }

    /// What a dropped file is, by its kind and the workspace it is dropped on.
    fn classify_drop(&self, path: &Path) -> Option<Pick> {
        let ext = extension(path);
        let train = self.workspace == Workspace::Train;
        if self.workspace == Workspace::Evaluate {
            // A folder is the dataset, a checkpoint or config the model to evaluate.
            if path.is_dir() {
                return Some(if path.join("test").is_dir() {
                    Pick::EvalDataset
                } else {
                    Pick::EvalCheckpoint
                });
            }
            match ext.as_str() {
                "yaml" | "yml" => return Some(Pick::EvalConfig),
                "bpk" | "tar" | "pth" => return Some(Pick::EvalCheckpoint),
                _ => {}
            }
        }
        if path.is_dir() {
            return Some(if train { Pick::Dataset } else { Pick::Driving });
        }
        match ext.as_str() {
            "yaml" | "yml" => Some(if train { Pick::TrainConfig } else { Pick::ModelConfig }),
            "bpk" | "tar" | "pth" => Some(Pick::Checkpoint),
            "gif" => Some(if self.workspace == Workspace::Live {
                Pick::CameraVideo
            } else {
                Pick::Driving
            }),
            e if VIDEO_CONTAINERS.contains(&e) => Some(if self.workspace == Workspace::Live {
                Pick::CameraVideo
            } else {
                Pick::Driving
            }),
            e if IMAGE_EXTENSIONS.contains(&e) => Some(Pick::Source),
            _ => None,
        }
    }

    fn handle_drops(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        for path in dropped {
            match self.classify_drop(&path) {
                Some(pick) => {
                    if matches!(
                        pick,
                        Pick::Source | Pick::Driving | Pick::Checkpoint | Pick::ModelConfig
                    ) {
                        self.workspace = match self.workspace {
                            Workspace::Live => Workspace::Live,
                            _ => Workspace::Animate,
                        };
                    }
                    self.take_path(pick, path);
                }
                None => self.log.push(format!(
                    "{}: not an image, a video, a checkpoint or a config",
                    path.display()
                )),
            }
        }
    }

    fn screenshot(&mut self, ctx: &egui::Context) {
        let Some((path, after)) = self.options.screenshot.clone() else {
            return;
        };
        let image = self.screenshot_taken.lock().ok().and_then(|mut taken| taken.take());
        if let Some(image) = image {
            let [w, h] = image.size;
            let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
            match image::RgbaImage::from_raw(w as u32, h as u32, rgba).map(|img| img.save(&path)) {
                Some(Ok(())) => eprintln!("screenshot: {}", path.display()),
                _ => eprintln!("error: cannot write the screenshot {}", path.display()),
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        } else if !self.screenshot_requested && self.started.elapsed().as_secs_f64() >= after {
            self.screenshot_requested = true;
            let taken = self.screenshot_taken.clone();
            let wake = ctx.clone();
            ctx.request_screenshot(move |image| {
                if let Ok(mut slot) = taken.lock() {
                    *slot = Some(image);
                }
                wake.request_repaint();
            });
        } else {
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_events(ctx);
        // --live-video: start once the model and photo are in.
        if self.options.live_video.is_some()
            && !self.live.running
            && self.live.frames == 0
            && self.live.error.is_none()
            && self.animate.model.is_some()
            && self.animate.source_loaded()
            && let Some(worker) = &self.worker
        {
            self.live.start(worker, self.animate.options());
        }
        for (pick, path) in self.dialogs.answers() {
            self.take_path(pick, path);
        }
        self.handle_drops(ctx);
        self.screenshot(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("workspaces").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("PriorityCut Studio");
                ui.separator();
                for workspace in Workspace::ALL {
                    ui.selectable_value(&mut self.workspace, workspace, workspace.title());
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.device_menu(ui);
                    let text = if self.backend.is_empty() {
                        "engine starting…"
                    } else {
                        &self.backend
                    };
                    // A long adapter name (and its note) is cut to the room the tabs leave.
                    ui.add(egui::Label::new(text).truncate())
                        .on_hover_text(format!("the device the engine computes on: {text}"));
                });
            });
        });
        egui::Panel::bottom("log").show(ui, |ui| {
            egui::CollapsingHeader::new(match self.log.last() {
                Some(last) => format!("Log: {last}"),
                None => "Log".to_string(),
            })
            .id_salt("log")
            .show(ui, |ui| {
                egui::ScrollArea::vertical().max_height(120.0).show(ui, |ui| {
                    for line in self.log.iter().rev() {
                        ui.label(line);
                    }
                });
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            let Some(worker) = self.worker.as_ref() else {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    "The engine is not running (see the log below).",
                );
                return;
            };
            let mut cx = PanelContext {
                worker,
                dialogs: &self.dialogs,
                maps: &mut self.maps,
                photo: self.animate.photo_context(),
            };
            let face = cx.photo.face;
            let panel: &mut dyn Panel = match self.workspace {
                Workspace::Animate => &mut self.animate,
                Workspace::Train => &mut self.train,
                Workspace::Live => &mut self.live,
                Workspace::Evaluate => &mut self.evaluate,
            };
            egui::ScrollArea::vertical()
                .id_salt("workspace")
                .show(ui, |ui| panel.ui(ui, &mut cx));
            // Live chooses the photo's framing for the Animate workspace too.
            if cx.photo.face != face {
                self.animate.settings.face = cx.photo.face;
            }
        });
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings());
    }
}
