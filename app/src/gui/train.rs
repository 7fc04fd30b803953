//! The Train workspace: choose a dataset, a config and a variant, start / pause / resume /
//! checkpoint / stop, and watch the batch live — images with keypoints, occlusion, background
//! and PriorityCut masks, the CutMix image, the U-Net's per-pixel verdicts — and the loss curves.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};
use prioritycut_engine::config::{TrainingMode, Variant};
use prioritycut_engine::render::{Colormap, Snapshot, SnapshotImage, SnapshotMap};
use prioritycut_engine::train::{StepReport, TrainEvent, TrainOptions};
use prioritycut_engine::worker::{Command, Event, Job, TrainConfig, TrainRequest, TrainingState, Worker};
use serde::{Deserialize, Serialize};

use super::maps::{MapLayer, MapPainter};
use super::panel::{Panel, PanelContext};
use super::widgets::{Dialogs, Pick, Picture, draw_keypoints, path_row};

/// The shortest time a steps-per-second figure is measured over.
const RATE_WINDOW_SECONDS: f64 = 0.5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    pub dataset: String,
    pub config: String,
    pub run: String,
    pub vgg19: String,
    pub variant: Variant,
    /// Train only a TPSMM model's AVD network (train_avd.py), from `trained_model`.
    pub avd: bool,
    /// The trained TPSMM model AVD training starts from.
    pub trained_model: String,
    /// 0: the config's epochs.
    pub steps: usize,
    pub checkpoint_every: usize,
    pub smoothing: f32,
    pub opacity: f32,
    pub overlay: bool,
    pub colormap: Option<Colormap>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            config: String::new(),
            run: String::new(),
            vgg19: String::new(),
            variant: Variant::UnetPrioritycut,
            avd: false,
            trained_model: String::new(),
            steps: 0,
            checkpoint_every: 250,
            smoothing: 0.9,
            opacity: 0.75,
            overlay: true,
            colormap: None,
        }
    }
}

#[derive(Debug)]
pub struct TrainPanel {
    pub settings: TrainSettings,
    pub state: Option<TrainingState>,
    pub step: usize,
    pub total_steps: usize,
    epoch: usize,
    backend: String,
    perceptual: String,
    /// name → (step, value)
    history: BTreeMap<&'static str, Vec<[f64; 2]>>,
    hidden: std::collections::BTreeSet<&'static str>,
    rate: Option<f64>,
    last_step_at: Option<(usize, Instant)>,
    snapshot: Option<Arc<Snapshot>>,
    snapshot_version: u64,
    pictures: HashMap<SnapshotImage, Picture>,
    pub messages: Vec<String>,
    pub error: Option<String>,
}

impl TrainPanel {
    pub fn new(settings: TrainSettings) -> Self {
        Self {
            settings,
            state: None,
            step: 0,
            total_steps: 0,
            epoch: 0,
            backend: String::new(),
            perceptual: String::new(),
            history: BTreeMap::new(),
            hidden: Default::default(),
            rate: None,
            last_step_at: None,
            snapshot: None,
            snapshot_version: 0,
            pictures: HashMap::new(),
            messages: Vec::new(),
            error: None,
        }
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    pub fn running(&self) -> bool {
        matches!(
            self.state,
            Some(TrainingState::Starting | TrainingState::Running | TrainingState::Paused)
        )
    }

    pub fn take_path(&mut self, pick: Pick, path: PathBuf) {
        let text = path.display().to_string();
        match pick {
            Pick::Dataset => self.settings.dataset = text,
            Pick::TrainConfig => self.settings.config = text,
            Pick::RunFolder => self.settings.run = text,
            Pick::Vgg19 => self.settings.vgg19 = text,
            Pick::TrainedModel => self.settings.trained_model = text,
            _ => {}
        }
    }

    fn note(&mut self, message: String) {
        self.messages.push(message);
        let excess = self.messages.len().saturating_sub(200);
        self.messages.drain(..excess);
    }

    fn on_train_event(&mut self, ctx: &egui::Context, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                step,
                total_steps,
                variant,
                backend,
                perceptual,
                resumed_from,
                ..
            } => {
                self.step = *step;
                self.total_steps = *total_steps;
                self.backend = backend.clone();
                self.perceptual = perceptual.clone();
                self.history.clear();
                let from = resumed_from
                    .as_ref()
                    .map(|p| format!(", resumed from {}", p.display()))
                    .unwrap_or_default();
                self.note(format!("training {variant} on {backend}{from}"));
            }
            TrainEvent::Step(report) => self.on_step(report),
            TrainEvent::Snapshot(snapshot) => {
                for (which, image) in &snapshot.images {
                    self.pictures
                        .entry(*which)
                        .or_default()
                        .set(ctx, &format!("train-{}", which.name()), image);
                }
                self.snapshot = Some(Arc::new((**snapshot).clone()));
                self.snapshot_version += 1;
            }
            TrainEvent::Checkpoint { step, path } => {
                self.note(format!("checkpoint at step {step}: {}", path.display()))
            }
            TrainEvent::Warning(message) => self.note(format!("warning: {message}")),
            TrainEvent::RolledBack {
                from_step,
                to_step,
                reason,
            } => self.note(format!("rolled back from step {from_step} to {to_step}: {reason}")),
            TrainEvent::Finished { step, finish } => self.note(format!("{finish:?} at step {step}")),
            // The worker turns these into training states.
            TrainEvent::Paused { .. } | TrainEvent::Resumed { .. } => {}
        }
    }

    fn on_step(&mut self, report: &StepReport) {
        // The rate over at least half a second: the window drains its events once a frame, so
        // fast steps arrive together and the time between two of them says nothing.
        let now = Instant::now();
        match self.last_step_at {
            Some((step, at)) if report.step > step => {
                let elapsed = now.duration_since(at).as_secs_f64();
                if elapsed >= RATE_WINDOW_SECONDS {
                    let rate = (report.step - step) as f64 / elapsed;
                    self.rate = Some(self.rate.map_or(rate, |r| 0.7 * r + 0.3 * rate));
                    self.last_step_at = Some((report.step, now));
                }
            }
            _ => self.last_step_at = Some((report.step, now)),
        }
        self.step = report.step;
        self.epoch = report.epoch;
        // A rollback replays steps: drop the points after it.
        for points in self.history.values_mut() {
            points.retain(|p| p[0] < report.step as f64);
        }
        for (name, value) in &report.losses {
            if value.is_finite() {
                self.history.entry(name).or_default().push([report.step as f64, *value]);
            }
        }
    }

    pub fn start(&mut self, worker: &Worker, resume: bool) {
        self.error = None;
        let run = PathBuf::from(self.settings.run.trim());
        // The worker reads the config (resuming, the run's own) on its training thread.
        let config = TrainConfig::File(PathBuf::from(self.settings.config.trim()));
        let mut options = TrainOptions::new(self.settings.dataset.trim(), run);
        options.resume = resume;
        options.steps = (self.settings.steps > 0).then_some(self.settings.steps);
        options.checkpoint_every = self.settings.checkpoint_every.max(1);
        options.snapshot_every = Some(Duration::from_secs(2));
        let vgg = self.settings.vgg19.trim();
        options.vgg19 = (!vgg.is_empty()).then(|| vgg.into());
        // A new run trains what the window says; a resumed one what its own config says.
        let mode = (!resume).then_some(if self.settings.avd {
            TrainingMode::TrainAvd
        } else {
            TrainingMode::Train
        });
        let trained = self.settings.trained_model.trim();
        if self.settings.avd && !resume && !trained.is_empty() {
            options.start_from = Some(trained.into());
        }
        worker.send(Command::StartTraining(Box::new(TrainRequest {
            config,
            variant: Some(self.settings.variant),
            mode,
            options,
        })));
        self.state = Some(TrainingState::Starting);
    }

    fn status_line(&self, ui: &mut egui::Ui) {
        let Some(state) = self.state else {
            ui.label("Not training.");
            return;
        };
        let mut text = format!("{state:?}");
        if self.total_steps > 0 {
            text += &format!(" | step {} / {} | epoch {}", self.step, self.total_steps, self.epoch);
            if let Some(rate) = self.rate {
                let left = self.total_steps.saturating_sub(self.step) as f64 / rate.max(1e-9);
                text += &format!(" | {rate:.2} steps/s | ETA {}", format_duration(left));
            }
        }
        ui.horizontal(|ui| {
            if self.total_steps > 0 {
                ui.add(
                    egui::ProgressBar::new(self.step as f32 / self.total_steps as f32)
                        .desired_width(160.0)
                        .animate(matches!(state, TrainingState::Running)),
                );
            }
            ui.label(text);
        });
        if !self.backend.is_empty() {
            ui.label(format!(
                "backend: {} | perceptual loss: {}",
                self.backend, self.perceptual
            ));
        }
    }

    /// Every image and map of the batch in `area`, tiles as large as fit.
    fn grid(&mut self, ui: &mut egui::Ui, maps: &mut MapPainter, area: egui::Vec2) {
        let Some(snapshot) = self.snapshot.clone() else {
            ui.label("The current batch shows here once training runs.");
            return;
        };
        let top = ui.max_rect().top();
        let header = ui.horizontal(|ui| {
            ui.label(format!(
                "Batch of step {} ({})",
                snapshot.step,
                snapshot.variant.title()
            ));
            ui.checkbox(&mut self.settings.overlay, "maps over their image");
            ui.add_enabled(
                self.settings.overlay,
                egui::Slider::new(&mut self.settings.opacity, 0.0..=1.0).text("opacity"),
            );
            let label = ui.label("colours");
            egui::ComboBox::from_id_salt("colormap")
                .selected_text(self.settings.colormap.map_or("automatic", |c| c.name()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.settings.colormap, None, "automatic");
                    for c in Colormap::ALL {
                        ui.selectable_value(&mut self.settings.colormap, Some(c), c.name());
                    }
                })
                .response
                .labelled_by(label.id);
        });
        let used = header.response.rect.bottom() - top + ui.spacing().item_spacing.y;
        let images: Vec<SnapshotImage> = SnapshotImage::ALL
            .into_iter()
            .filter(|which| self.pictures.contains_key(which))
            .collect();
        let shown_maps: Vec<SnapshotMap> = SnapshotMap::ALL
            .into_iter()
            .filter(|which| snapshot.map(*which).is_some())
            .collect();
        let (columns, side) = tile_layout(images.len(), shown_maps.len(), area - egui::vec2(0.0, used));
        for row in images.chunks(columns) {
            ui.horizontal(|ui| {
                for which in row {
                    let Some(picture) = self.pictures.get(which) else {
                        continue;
                    };
                    let rect = picture.show(ui, which.name(), side, "");
                    if let Some(points) = snapshot.keypoints(*which) {
                        draw_keypoints(ui, rect, points);
                    }
                }
            });
        }
        for row in shown_maps.chunks(columns) {
            ui.horizontal(|ui| {
                for &which in row {
                    let Some(map) = snapshot.map(which) else { continue };
                    ui.vertical(|ui| {
                        let layer = MapLayer {
                            id: egui::Id::unique(("train-map", which.name())),
                            version: self.snapshot_version,
                            map: Arc::new(map.clone()),
                            image: self
                                .settings
                                .overlay
                                .then(|| snapshot.image(which.lies_over()).map(|i| Arc::new(i.clone())))
                                .flatten(),
                            colormap: self.settings.colormap.unwrap_or_else(|| which.default_colormap()),
                            opacity: self.settings.opacity,
                        };
                        maps.show(ui, &layer, egui::vec2(side, side))
                            .on_hover_text(which.help());
                        ui.label(which.name().replace('_', " "));
                    });
                }
            });
        }
    }

    fn plot(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Losses");
            ui.add(egui::Slider::new(&mut self.settings.smoothing, 0.0..=0.99).text("smoothing"));
        });
        ui.horizontal_wrapped(|ui| {
            for name in self.history.keys() {
                let mut shown = !self.hidden.contains(name);
                if ui.checkbox(&mut shown, *name).changed() {
                    if shown {
                        self.hidden.remove(name);
                    } else {
                        self.hidden.insert(name);
                    }
                }
            }
        });
        let alpha = self.settings.smoothing as f64;
        Plot::new("losses")
            .height((ui.available_height() - 4.0).max(160.0))
            .legend(Legend::default())
            .x_axis_label("step")
            .show(ui, |plot| {
                for (name, points) in &self.history {
                    if self.hidden.contains(name) {
                        continue;
                    }
                    let mut smoothed = Vec::with_capacity(points.len());
                    let mut average: Option<f64> = None;
                    for p in points {
                        let v = average.map_or(p[1], |a| alpha * a + (1.0 - alpha) * p[1]);
                        average = Some(v);
                        smoothed.push([p[0], v]);
                    }
                    plot.line(Line::new(*name, PlotPoints::from(smoothed)));
                }
            });
    }

    /// Dataset, config, run folder, weights, variant and schedule (fixed while running).
    fn inputs_ui(&mut self, ui: &mut egui::Ui, dialogs: &Dialogs, running: bool) {
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("train-inputs")
                .num_columns(1)
                .spacing([8.0, 4.0])
                .show(ui, |ui| {
                    if path_row(
                        ui,
                        "Dataset",
                        &mut self.settings.dataset,
                        "a folder with train/ and test/",
                    ) {
                        dialogs.open(Pick::Dataset);
                    }
                    ui.end_row();
                    if path_row(
                        ui,
                        "Config",
                        &mut self.settings.config,
                        "assets/configs/synthetic-64.yaml",
                    ) {
                        dialogs.open(Pick::TrainConfig);
                    }
                    ui.end_row();
                    if path_row(ui, "Run folder", &mut self.settings.run, "where checkpoints go") {
                        dialogs.open(Pick::RunFolder);
                    }
                    ui.end_row();
                    if path_row(
                        ui,
                        "VGG19 weights",
                        &mut self.settings.vgg19,
                        "optional: vgg19-dcbb9e9d.pth",
                    ) {
                        dialogs.open(Pick::Vgg19);
                    }
                    ui.end_row();
                    if self.settings.avd {
                        if path_row(
                            ui,
                            "Trained model",
                            &mut self.settings.trained_model,
                            "the TPSMM checkpoint or run whose AVD network trains",
                        ) {
                            dialogs.open(Pick::TrainedModel);
                        }
                        ui.end_row();
                    }
                });
            ui.horizontal(|ui| {
                ui.checkbox(&mut self.settings.avd, "AVD network only").on_hover_text(
                    "TPSMM: train only the AVD network of a trained model (train_avd.py), for the avd motion mode",
                );
                // AVD training has no variant: only the AVD network learns.
                ui.add_enabled_ui(!self.settings.avd, |ui| {
                    let label = ui.label("Variant");
                    egui::ComboBox::from_id_salt("variant")
                        .selected_text(self.settings.variant.title())
                        .show_ui(ui, |ui| {
                            for v in Variant::ALL {
                                ui.selectable_value(&mut self.settings.variant, v, v.title());
                            }
                        })
                        .response
                        .labelled_by(label.id);
                });
                let label = ui.label("steps (0: the config's)");
                ui.add(egui::DragValue::new(&mut self.settings.steps).range(0..=10_000_000))
                    .labelled_by(label.id);
                let label = ui.label("checkpoint every");
                ui.add(egui::DragValue::new(&mut self.settings.checkpoint_every).range(1..=1_000_000))
                    .labelled_by(label.id);
            });
        });
    }

    /// Start, resume, pause, continue, checkpoint, stop.
    fn controls_ui(&mut self, ui: &mut egui::Ui, worker: &Worker, running: bool) {
        ui.horizontal(|ui| {
            if ui.add_enabled(!running, egui::Button::new("▶ Start")).clicked() {
                self.start(worker, false);
            }
            if ui.add_enabled(!running, egui::Button::new("⟳ Resume run")).clicked() {
                self.start(worker, true);
            }
            let paused = self.state == Some(TrainingState::Paused);
            if ui
                .add_enabled(running && !paused, egui::Button::new("⏸ Pause"))
                .clicked()
            {
                worker.send(Command::PauseTraining);
            }
            if ui.add_enabled(paused, egui::Button::new("▶ Continue")).clicked() {
                worker.send(Command::ResumeTraining);
            }
            if ui
                .add_enabled(running, egui::Button::new("💾 Checkpoint now"))
                .clicked()
            {
                worker.send(Command::CheckpointNow);
            }
            if ui.add_enabled(running, egui::Button::new("⏹ Stop")).clicked() {
                worker.send(Command::StopTraining);
            }
        });
    }

    /// The batch's images and maps beside the loss plot.
    fn batch_and_losses_ui(&mut self, ui: &mut egui::Ui, maps: &mut MapPainter) {
        // The batch (every image and map, the decoder's three included) beside the loss plot,
        // both sized to the window: nothing of the paper's picture is below the fold.
        let messages_height = 26.0;
        let available = ui.available_size();
        let body_height = (available.y - messages_height).max(240.0);
        let plot_width = (available.x * 0.34).clamp(260.0, 560.0);
        let grid_width = (available.x - plot_width - 16.0).max(200.0);
        let column = egui::Layout::top_down(egui::Align::Min);
        ui.horizontal_top(|ui| {
            ui.allocate_ui_with_layout(egui::vec2(grid_width, body_height), column, |ui| {
                ui.set_min_size(egui::vec2(grid_width, body_height));
                self.grid(ui, maps, egui::vec2(grid_width, body_height));
            });
            ui.separator();
            ui.allocate_ui_with_layout(egui::vec2(plot_width, body_height), column, |ui| self.plot(ui));
        });
    }

    /// The run's messages, newest first.
    fn messages_ui(&self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new(format!("Messages ({})", self.messages.len()))
            .id_salt("train-messages")
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("train-messages-scroll")
                    .max_height(160.0)
                    .show(ui, |ui| {
                        for message in self.messages.iter().rev().take(50) {
                            ui.label(message);
                        }
                    });
            });
    }
}

impl Panel for TrainPanel {
    fn on_event(&mut self, ctx: &egui::Context, event: &Event) {
        match event {
            Event::TrainingState(state) => {
                self.state = Some(*state);
                if matches!(state, TrainingState::Running) {
                    self.last_step_at = None;
                }
            }
            Event::Training(event) => self.on_train_event(ctx, event),
            Event::Error {
                job: Job::Training,
                message,
            } => {
                self.error = Some(message.clone());
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PanelContext<'_>) {
        let (worker, dialogs) = (cx.worker, cx.dialogs);
        let maps = &mut *cx.maps;
        ui.heading("Train");
        let running = self.running();
        self.inputs_ui(ui, dialogs, running);
        self.controls_ui(ui, worker, running);
        self.status_line(ui);
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        ui.separator();
        self.batch_and_losses_ui(ui, maps);
        self.messages_ui(ui);
    }
}

/// Columns and tile side that show `images` then `maps` (each starting a new row) largest in
/// `area`: every tile carries a caption line under it.
fn tile_layout(images: usize, maps: usize, area: egui::Vec2) -> (usize, f32) {
    const CAPTION: f32 = 22.0;
    const GAP: f32 = 8.0;
    (3..=10)
        .map(|columns| {
            let rows = images.div_ceil(columns) + maps.div_ceil(columns);
            let by_width = (area.x - GAP * columns as f32) / columns as f32;
            let by_height = (area.y - (CAPTION + GAP) * rows as f32) / rows.max(1) as f32;
            (columns, by_width.min(by_height).clamp(48.0, 320.0))
        })
        .fold(
            (5, 0.0),
            |best, candidate| if candidate.1 > best.1 { candidate } else { best },
        )
}

fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(step: usize) -> StepReport {
        StepReport {
            step,
            epoch: 0,
            lr: 1e-3,
            losses: vec![("rec_kp", 0.5)],
            mixed: false,
            skipped: false,
            seconds: 0.001,
        }
    }

    /// Steps the window receives together (fast steps, drained once a frame) give no rate of
    /// their own; the rate is measured over half a second at least. (Before: 30 000 steps/s
    /// and an ETA of 0 s for a run doing 12.)
    #[test]
    fn steps_arriving_together_do_not_make_the_rate() {
        let mut panel = TrainPanel::new(TrainSettings::default());
        for step in 1..=100 {
            panel.on_step(&report(step));
        }
        assert_eq!(panel.rate, None, "no rate before half a second has passed");
        std::thread::sleep(Duration::from_secs_f64(RATE_WINDOW_SECONDS));
        panel.on_step(&report(101));
        let rate = panel.rate.expect("a rate after half a second");
        assert!(rate > 0.0 && rate <= 200.0, "100 steps over ≥ 0.5 s: {rate} steps/s");
    }
}
