//! The paper's ablation (Tables 1–3): the five models trained with the same seed, data and step
//! budget, each then put through the reconstruction protocol ([`crate::eval`]). With a TPSMM
//! config the generator is TPSMM's and the variants are those it trains (its own training, and
//! the three U-Net variants).
//!
//! Every variant trains in its own run folder (`OUT/<variant>/`), so an interrupted ablation
//! resumes where it stopped: finished variants are only evaluated again, a half-trained one
//! continues from its last checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::backend::SelectedDevice;
use crate::checkpoint::RunDir;
use crate::config::Variant;
use crate::eval::{EvalOptions, EvalReport, EvalSummary, evaluate};
use crate::evaluators::Evaluators;
use crate::family::LoadedModel;
use crate::render::sheet::{DIFFERENCE_RANGE, Example, comparison_figure};
use crate::train::{Finish, TrainEvent, TrainOptions, TrainingConfig, train};
use crate::{EngineError, Result};

/// What to ablate.
#[derive(Debug, Clone)]
pub struct AblationOptions {
    pub dataset: PathBuf,
    /// One run folder per variant goes in here.
    pub out: PathBuf,
    /// Training steps per variant.
    pub steps: usize,
    pub seed: u64,
    pub variants: Vec<Variant>,
    pub checkpoint_every: usize,
    /// torchvision VGG19 weights for the perceptual loss; without, the pixel fallback.
    pub vgg19: Option<PathBuf>,
    pub eval: EvalOptions,
    /// MTCNN's weights, for AKD and MKR by faces' landmarks on datasets with no evaluator of
    /// their own.
    pub face_weights: Option<PathBuf>,
}

impl AblationOptions {
    pub fn new(dataset: impl Into<PathBuf>, out: impl Into<PathBuf>, steps: usize) -> Self {
        Self {
            dataset: dataset.into(),
            out: out.into(),
            steps,
            seed: 0,
            variants: Variant::ALL.to_vec(),
            checkpoint_every: 500,
            vgg19: None,
            eval: EvalOptions::default(),
            face_weights: None,
        }
    }

    pub fn run_dir(&self, variant: Variant) -> PathBuf {
        self.out.join(variant.name())
    }
}

/// Progress of an ablation, in order.
#[derive(Debug)]
pub enum AblationEvent {
    /// Variant `index` of `count` starts training (or resumes, or is already trained).
    Training {
        variant: Variant,
        index: usize,
        count: usize,
    },
    /// What its training reported.
    Train { variant: Variant, event: TrainEvent },
    /// Its evaluation: test videos done of all.
    Evaluating {
        variant: Variant,
        done: usize,
        total: usize,
    },
    Evaluated {
        variant: Variant,
        summary: Box<EvalSummary>,
    },
}

/// One row of the table.
#[derive(Debug)]
pub struct AblationRow {
    pub variant: Variant,
    pub run_dir: PathBuf,
    /// Steps the evaluated checkpoint was trained for.
    pub steps: usize,
    pub report: EvalReport,
}

/// The variants a family's ablation trains when none are named: every one it can train (TPSMM
/// has no keypoint-conditioned discriminator, so no `fomm-adv`).
pub fn family_variants(config: &TrainingConfig) -> Vec<Variant> {
    Variant::ALL
        .into_iter()
        .filter(|&variant| {
            let mut config = config.clone();
            config.set_variant(variant);
            config.check().is_ok()
        })
        .collect()
}

/// A row's name in the table and figure: the paper's for FOMM; for another family its name for
/// its own training, its name before the paper's for the variants.
pub fn row_title(family: &str, variant: Variant) -> String {
    match (family, variant) {
        ("FOMM", _) => variant.title().to_string(),
        (_, Variant::Fomm) => family.to_string(),
        _ => format!("{family} {}", variant.title()),
    }
}

#[derive(Debug)]
pub struct AblationReport {
    /// The family trained ("FOMM", "TPSMM").
    pub family: &'static str,
    pub rows: Vec<AblationRow>,
    /// How the models were trained (backend, perceptual loss), as the runs reported it.
    pub trained_on: String,
}

impl AblationReport {
    /// Figure 5: the kept middle frames of the first test videos, every model side by side.
    pub fn figure(&self, dataset: &Path) -> image::RgbImage {
        let models: Vec<(String, Vec<_>)> = self
            .rows
            .iter()
            .map(|row| {
                let examples = row
                    .report
                    .videos
                    .iter()
                    .filter_map(|video| {
                        let middle = video.middle.as_ref()?;
                        Some(Example {
                            source: video.source.clone(),
                            real: middle.real.clone(),
                            reconstruction: middle.reconstruction.clone(),
                        })
                    })
                    .collect();
                (row_title(self.family, row.variant), examples)
            })
            .collect();
        comparison_figure(
            &format!(
                "{}: source, driving, each model; below, |real - model| (magma, 0 to {DIFFERENCE_RANGE})",
                dataset.display()
            ),
            &models,
        )
    }

    pub fn markdown(&self) -> String {
        let mut table = format!("{}\n", EvalSummary::MARKDOWN_HEADER);
        for row in &self.rows {
            table += &row.report.summary().markdown_row(&row_title(self.family, row.variant));
            table.push('\n');
        }
        table
    }

    pub fn csv(&self) -> String {
        let mut table = format!("{},steps\n", EvalSummary::CSV_HEADER);
        for row in &self.rows {
            let title = row_title(self.family, row.variant);
            table += &format!("{},{}\n", row.report.summary().csv_row(&title), row.steps);
        }
        table
    }
}

/// Trains and evaluates every variant of `options` in turn. Returns `None` when `stop` was
/// raised (the variant in training checkpoints first, so a rerun resumes it).
pub fn run_ablation(
    config: &TrainingConfig,
    options: &AblationOptions,
    selected: &SelectedDevice,
    stop: &AtomicBool,
    mut on_event: impl FnMut(AblationEvent),
) -> Result<Option<AblationReport>> {
    if options.variants.is_empty() {
        return Err(EngineError::Invalid("an ablation needs at least one variant".into()));
    }
    if options.steps == 0 {
        return Err(EngineError::Invalid(
            "an ablation needs at least one training step".into(),
        ));
    }
    // Refuse a variant the family cannot train, and bad data, before the first variant trains
    // for an hour.
    for &variant in &options.variants {
        let mut config = config.clone();
        config.set_variant(variant);
        config.check()?;
    }
    crate::data::dataset::FramesDataset::open(
        &options.dataset,
        crate::data::dataset::Split::Test,
        config.frame_shape(),
        config.dataset(),
    )?;
    let evaluators =
        Evaluators::for_dataset_or_faces(&options.dataset, options.face_weights.as_deref(), &selected.device)?;
    let mut rows = Vec::with_capacity(options.variants.len());
    let mut trained_on = Vec::new();
    let count = options.variants.len();
    for (index, &variant) in options.variants.iter().enumerate() {
        on_event(AblationEvent::Training { variant, index, count });
        let run_dir = options.run_dir(variant);
        let Some(steps) = train_variant(config, options, variant, &run_dir, selected, stop, &mut |event| {
            if let TrainEvent::Started {
                backend, perceptual, ..
            } = &event
            {
                let line = format!("{backend}, perceptual loss: {perceptual}");
                if !trained_on.contains(&line) {
                    trained_on.push(line);
                }
            }
            on_event(AblationEvent::Train { variant, event });
        })?
        else {
            return Ok(None);
        };
        let model = LoadedModel::open(&run_dir, None, &selected.device)?;
        let report = evaluate(
            &model,
            &options.dataset,
            &options.eval,
            &evaluators,
            &selected.device,
            |done, total| on_event(AblationEvent::Evaluating { variant, done, total }),
        )?;
        report.write(&run_dir.join("eval"), &row_title(config.family(), variant))?;
        on_event(AblationEvent::Evaluated {
            variant,
            summary: Box::new(report.summary()),
        });
        rows.push(AblationRow {
            variant,
            run_dir,
            steps,
            report,
        });
    }
    let report = AblationReport {
        family: config.family(),
        rows,
        trained_on: trained_on.join("; "),
    };
    for (name, text) in [("table.md", report.markdown()), ("table.csv", report.csv())] {
        crate::files::write_atomic(&options.out.join(name), text.as_bytes())?;
    }
    crate::files::write_png(&options.out.join("figure.png"), &report.figure(&options.dataset))?;
    Ok(Some(report))
}

/// Trains `variant` to `options.steps` in `run_dir`, resuming what is there; the steps of the
/// checkpoint it ends on, or `None` when stopped.
fn train_variant(
    config: &TrainingConfig,
    options: &AblationOptions,
    variant: Variant,
    run_dir: &Path,
    selected: &SelectedDevice,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Option<usize>> {
    let mut config = config.clone();
    config.set_variant(variant);
    let mut train_options = TrainOptions::new(&options.dataset, run_dir);
    train_options.steps = Some(options.steps);
    train_options.seed = options.seed;
    train_options.checkpoint_every = options.checkpoint_every.max(1);
    train_options.keep_checkpoints = 2;
    train_options.snapshot_every = None;
    train_options.vgg19 = options.vgg19.clone();
    train_options.resume = RunDir::open(run_dir, false)?.latest().is_some();
    let finish = train(config, train_options, selected, stop, on_event)?;
    Ok(match finish {
        (Finish::Completed, step) => Some(step),
        (Finish::Stopped, _) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FOMM ablates all five models; TPSMM the four it trains, named after it.
    #[test]
    fn each_family_ablates_what_it_trains_under_its_name() {
        let fomm = TrainingConfig::from(crate::config::FommConfig::vox256());
        assert_eq!(family_variants(&fomm), Variant::ALL.to_vec());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/configs/synthetic-64-tpsmm.yaml");
        let (tpsmm, _) = TrainingConfig::read_yaml_file(&path).expect("bundled TPSMM config");
        assert_eq!(
            family_variants(&tpsmm),
            vec![
                Variant::Fomm,
                Variant::Unet,
                Variant::UnetCutmix,
                Variant::UnetPrioritycut
            ]
        );
        assert_eq!(row_title("FOMM", Variant::UnetPrioritycut), "U-Net+PriorityCut");
        assert_eq!(row_title("TPSMM", Variant::Fomm), "TPSMM");
        assert_eq!(row_title("TPSMM", Variant::UnetCutmix), "TPSMM U-Net+CutMix");
    }
}
