//! The Evaluate workspace: FOMM's video-reconstruction protocol on a checkpoint and a dataset's
//! test videos, the paper's table (one row per evaluation, so checkpoints can be compared), and
//! the worst reconstructions with their difference heatmaps.

use std::path::PathBuf;

use eframe::egui;
use prioritycut_engine::eval::{EvalOptions, EvalReport, EvalSummary};
use prioritycut_engine::metrics::Interval;
use prioritycut_engine::worker::{Command, EvalFaces, EvalRequest, Event, Job, SYNTHETIC_TEST_SET, Worker};
use serde::{Deserialize, Serialize};

use super::panel::{Panel, PanelContext};
use super::widgets::{Dialogs, Pick, Picture, path_row, progress};
use prioritycut_engine::render::sheet::{DIFFERENCE_RANGE, difference_image};

/// Worst videos shown.
const WORST_SHOWN: usize = 6;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluateSettings {
    pub checkpoint: String,
    pub config: String,
    pub dataset: String,
    pub masks: String,
    /// 0: every test video.
    pub videos: usize,
    /// AKD and MKR by faces' landmarks (MTCNN) on datasets with no evaluator of their own.
    pub face_keypoints: bool,
    /// Each test video cut around its face track first (raw talking-head clips).
    pub face_crop: bool,
}

impl Default for EvaluateSettings {
    fn default() -> Self {
        Self {
            checkpoint: String::new(),
            config: String::new(),
            dataset: synthetic_test_set().display().to_string(),
            masks: String::new(),
            videos: 0,
            face_keypoints: true,
            face_crop: false,
        }
    }
}

/// Where the synthetic test set is made when the user has no data of their own.
pub fn synthetic_test_set() -> PathBuf {
    std::env::temp_dir().join("prioritycut-synthetic-test-set")
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct TableRow {
    pub name: String,
    pub summary: EvalSummary,
}

/// A worst case: the frame of a video reconstructed worst, with its difference heatmap.
#[derive(Debug)]
struct WorstCase {
    caption: String,
    pictures: [Picture; 3],
}

#[derive(Debug)]
pub struct EvaluatePanel {
    pub settings: EvaluateSettings,
    pub running: bool,
    progress: Option<(Job, usize, usize)>,
    pub rows: Vec<TableRow>,
    worst: Vec<WorstCase>,
    pub error: Option<String>,
    pub status: Option<String>,
    /// The bundled face detector's weights, for the face landmark evaluator.
    face_weights: PathBuf,
}

impl EvaluatePanel {
    pub fn new(settings: EvaluateSettings, face_weights: PathBuf) -> Self {
        Self {
            settings,
            face_weights,
            running: false,
            progress: None,
            rows: Vec::new(),
            worst: Vec::new(),
            error: None,
            status: None,
        }
    }

    pub fn take_path(&mut self, pick: Pick, path: PathBuf) {
        let text = path.display().to_string();
        match pick {
            Pick::EvalCheckpoint => self.settings.checkpoint = text,
            Pick::EvalConfig => self.settings.config = text,
            Pick::EvalDataset => self.settings.dataset = text,
            Pick::EvalMasks => self.settings.masks = text,
            _ => {}
        }
    }

    pub fn start(&mut self, worker: &Worker) {
        let optional = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let (Some(checkpoint), Some(dataset)) = (optional(&self.settings.checkpoint), optional(&self.settings.dataset))
        else {
            self.error = Some("choose a checkpoint and a dataset first".into());
            return;
        };
        let synthetic_if_missing = dataset == synthetic_test_set();
        worker.send(Command::Evaluate(Box::new(EvalRequest {
            checkpoint,
            config: optional(&self.settings.config),
            dataset,
            options: EvalOptions {
                max_videos: (self.settings.videos > 0).then_some(self.settings.videos),
                masks: optional(&self.settings.masks),
                ..EvalOptions::default()
            },
            synthetic_if_missing,
            faces: (self.settings.face_keypoints || self.settings.face_crop).then(|| EvalFaces {
                weights: self.face_weights.clone(),
                landmarks: self.settings.face_keypoints,
                crop: self.settings.face_crop,
            }),
        })));
        self.running = true;
        self.error = None;
        self.status = None;
        self.progress = None;
    }

    fn show_worst(&mut self, ctx: &egui::Context, report: &EvalReport) {
        self.worst = report
            .worst_videos(WORST_SHOWN)
            .into_iter()
            .filter_map(|video| {
                let worst = video.worst.as_ref()?;
                let frame = video.frames.get(worst.index)?;
                let mut pictures: [Picture; 3] = Default::default();
                let id = format!("eval-{}", video.name);
                pictures[0].set(ctx, &format!("{id}-real"), &worst.real);
                pictures[1].set(ctx, &format!("{id}-fake"), &worst.reconstruction);
                pictures[2].set(
                    ctx,
                    &format!("{id}-diff"),
                    &difference_image(&worst.real, &worst.reconstruction),
                );
                Some(WorstCase {
                    caption: format!(
                        "{}: mean L1 {:.4}; worst frame {} (L1 {:.4}, PSNR {:.2}, SSIM {:.3})",
                        video.name,
                        video.mean_l1(),
                        worst.index,
                        frame.l1,
                        frame.psnr,
                        frame.ssim
                    ),
                    pictures,
                })
            })
            .collect();
    }

    fn table(&self, ui: &mut egui::Ui) {
        if self.rows.is_empty() {
            ui.label(
                egui::RichText::new("No evaluation yet: choose a checkpoint and a dataset, then Evaluate.").weak(),
            );
            return;
        }
        let header: Vec<&str> = EvalSummary::MARKDOWN_HEADER
            .lines()
            .next()
            .unwrap_or("")
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        egui::Grid::new("eval-table")
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                // The window's fonts have no arrows: which way is better goes in the hover text.
                for cell in &header {
                    let (name, better) = match cell.strip_suffix(" ↓") {
                        Some(name) => (name, "lower is better"),
                        None => (cell.strip_suffix(" ↑").unwrap_or(cell), "higher is better"),
                    };
                    let name = name.replace("¬salient", "rest");
                    let hover = if name == "Model" { "the checkpoint" } else { better };
                    ui.strong(name).on_hover_text(hover);
                }
                ui.end_row();
                for row in &self.rows {
                    ui.label(&row.name);
                    for (interval, decimals) in row.summary.columns() {
                        match interval {
                            Some(i) => ui.label(i.format(decimals)),
                            None => ui.label(egui::RichText::new("—").weak()),
                        }
                        .on_hover_text(describe(interval));
                    }
                    ui.end_row();
                }
            });
    }

    /// The checkpoint, the dataset and how to measure (fixed while running).
    fn inputs_ui(&mut self, ui: &mut egui::Ui, dialogs: &Dialogs, open_model: Option<(&str, &str)>) {
        ui.add_enabled_ui(!self.running, |ui| {
            egui::Grid::new("eval-inputs")
                .num_columns(1)
                .spacing([8.0, 4.0])
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if path_row(
                            ui,
                            "Checkpoint",
                            &mut self.settings.checkpoint,
                            "a .pth.tar, a .bpk or a run folder",
                        ) {
                            dialogs.open(Pick::EvalCheckpoint);
                        }
                        if let Some((checkpoint, config)) = open_model
                            && ui.button("Use the Animate model").on_hover_text(checkpoint).clicked()
                        {
                            self.settings.checkpoint = checkpoint.to_string();
                            self.settings.config = config.to_string();
                        }
                    });
                    ui.end_row();
                    if path_row(
                        ui,
                        "Config",
                        &mut self.settings.config,
                        "needed for an official .pth.tar; a run's own otherwise",
                    ) {
                        dialogs.open(Pick::EvalConfig);
                    }
                    ui.end_row();
                    ui.horizontal(|ui| {
                        if path_row(ui, "Dataset", &mut self.settings.dataset, "a folder with test/") {
                            dialogs.open(Pick::EvalDataset);
                        }
                        let (videos, frames) = SYNTHETIC_TEST_SET;
                        if ui
                            .button("Synthetic test set")
                            .on_hover_text(format!(
                                "{videos} videos of {frames} frames of synthetic figures, made on first use"
                            ))
                            .clicked()
                        {
                            self.settings.dataset = synthetic_test_set().display().to_string();
                        }
                    });
                    ui.end_row();
                    if path_row(
                        ui,
                        "Salient masks",
                        &mut self.settings.masks,
                        "optional: DIR/<video>/NNNN.png (synthetic data has its own)",
                    ) {
                        dialogs.open(Pick::EvalMasks);
                    }
                    ui.end_row();
                });
            ui.horizontal(|ui| {
                let label = ui.label("test videos (0: all)");
                ui.add(egui::DragValue::new(&mut self.settings.videos).range(0..=100_000))
                    .labelled_by(label.id);
                ui.checkbox(&mut self.settings.face_keypoints, "face landmarks for AKD/MKR")
                    .on_hover_text(
                        "on real videos (datasets that bring no evaluator of their own), AKD and MKR over \
                         MTCNN's five landmarks of the largest face; not the paper's 68-point detector",
                    );
                ui.checkbox(&mut self.settings.face_crop, "crop each video around its face")
                    .on_hover_text(
                        "for talking-head clips not cropped as VoxCeleb's are: each test video is cut to \
                         the square around its face track (crop-video.py's) before reconstruction",
                    );
            });
        });
    }

    /// Evaluate / Cancel, progress, and what the last run said.
    fn run_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal(|ui| {
            if ui.add_enabled(!self.running, egui::Button::new("▶ Evaluate")).clicked() {
                self.start(worker);
            }
            if ui.add_enabled(self.running, egui::Button::new("⏹ Cancel")).clicked() {
                worker.send(Command::CancelEvaluation);
            }
            if self.running && self.progress.is_none() {
                ui.spinner();
                ui.label("loading the model…");
            }
        });
        if let Some((job, done, total)) = self.progress {
            let what = match job {
                Job::MakeTestSet => "making the synthetic test set: video",
                _ => "test video",
            };
            progress(ui, Some((done, total)), what);
        }
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        if let Some(status) = &self.status {
            ui.label(status);
        }
    }

    /// The worst-reconstructed frames beside their real ones and the difference.
    fn worst_ui(&self, ui: &mut egui::Ui) {
        if !self.worst.is_empty() {
            ui.separator();
            ui.strong("Worst reconstructions");
            ui.label(format!(
                "real frame | reconstruction | |real - reconstruction| (magma, 0 to {DIFFERENCE_RANGE} and above)"
            ));
            for case in &self.worst {
                ui.horizontal(|ui| {
                    for (picture, caption) in case.pictures.iter().zip(["real", "reconstruction", "difference"]) {
                        picture.show(ui, caption, 128.0, "");
                    }
                });
                ui.label(&case.caption);
                ui.add_space(6.0);
            }
        }
    }
}

impl Panel for EvaluatePanel {
    fn on_event(&mut self, ctx: &egui::Context, event: &Event) {
        match event {
            Event::Progress { job, done, total } if matches!(job, Job::Evaluate | Job::MakeTestSet) => {
                self.progress = Some((*job, *done, *total));
            }
            Event::Evaluated { checkpoint, report } => {
                self.running = false;
                self.progress = None;
                let name = checkpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| checkpoint.display().to_string());
                let summary = report.summary();
                self.status = Some(format!(
                    "{} test videos, {} frames ({} with a salient mask) | {} | {}",
                    report.videos.len(),
                    summary.frames,
                    summary.masked_frames,
                    report.masks,
                    report.evaluators
                ));
                if !report.warnings.is_empty() {
                    self.error = Some(format!("skipped: {}", report.warnings.join("; ")));
                }
                self.rows.push(TableRow { name, summary });
                self.show_worst(ctx, report);
            }
            Event::Cancelled(Job::Evaluate) => {
                self.running = false;
                self.progress = None;
                self.status = Some("evaluation cancelled".into());
            }
            Event::Error {
                job: Job::Evaluate,
                message,
            } => {
                self.running = false;
                self.progress = None;
                self.error = Some(message.clone());
            }
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PanelContext<'_>) {
        let (worker, dialogs) = (cx.worker, cx.dialogs);
        let open_model = cx
            .photo
            .model
            .as_ref()
            .map(|(checkpoint, config)| (checkpoint.as_str(), config.as_str()));
        ui.heading("Evaluate");
        ui.label(
            "FOMM's video reconstruction: the first frame of each test video is animated by every \
             frame of it, and each result is compared with the real frame (the paper's Tables 1-3).",
        );
        self.inputs_ui(ui, dialogs, open_model);
        self.run_ui(ui, worker);
        ui.separator();
        self.table(ui);
        self.worst_ui(ui);
    }
}

fn describe(interval: Option<Interval>) -> String {
    match interval {
        Some(i) => format!("mean of {} frames, ± the 95% confidence interval", i.count),
        None => "not measured: no mask or evaluator for this dataset".into(),
    }
}
