//! `prioritycut ablate --dataset DIR --config Y --steps N --out DIR`: the paper's five models
//! trained alike, evaluated alike; the table (Markdown, CSV) and a Figure-5 style picture.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;
use prioritycut_engine::ablation::{AblationEvent, AblationOptions, family_variants, row_title, run_ablation};
use prioritycut_engine::config::Variant;
use prioritycut_engine::eval::EvalOptions;
use prioritycut_engine::train::{TrainEvent, TrainingConfig};

use super::DeviceArgs;

#[derive(Debug, Args)]
pub struct AblateArgs {
    /// A dataset in FOMM's layout: trained on train/, evaluated on test/.
    #[arg(long)]
    pub dataset: PathBuf,
    /// FOMM's or TPSMM's YAML config shared by every variant (its prioritycut_params.variant
    /// is replaced).
    #[arg(long)]
    pub config: PathBuf,
    /// Training steps per variant.
    #[arg(long)]
    pub steps: usize,
    /// Output folder: a run folder per variant, table.md, table.csv, figure.png. Run again on
    /// the same folder to resume an interrupted ablation.
    #[arg(long)]
    pub out: PathBuf,
    /// The variants, comma separated (default: every one the config's family trains, in the
    /// paper's order: all five for FOMM; fomm, unet, unet-cutmix, unet-prioritycut for TPSMM).
    #[arg(long, value_delimiter = ',', value_parser = super::train::parse_variant)]
    pub variants: Vec<Variant>,
    /// Random seed every variant starts from, so that they differ only by the variant.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub overrides: super::train::TrainOverrides,
    /// Checkpoint every this many steps (default: a quarter of --steps).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// torchvision VGG19 weights for the perceptual loss, FOMM's and TPSMM's (else the pixel-pyramid fallback).
    #[arg(long)]
    pub vgg19: Option<PathBuf>,
    /// Evaluate on the first N test videos only.
    #[arg(long)]
    pub videos: Option<usize>,
    /// Salient masks as DIR/<video>/NNNN.png (default: the dataset's own truth/, if any).
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Test videos shown in figure.png (their middle frames).
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
    /// Leave AKD and MKR empty on a dataset of real videos instead of measuring them over
    /// MTCNN's five face landmarks.
    #[arg(long)]
    pub no_face_keypoints: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: AblateArgs) -> anyhow::Result<ExitCode> {
    let (mut config, ignored_keys) = TrainingConfig::read_yaml_file(&args.config)?;
    super::report_ignored_keys(&ignored_keys);
    args.overrides.apply(&mut config)?;
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let selected = args.device.open_for_training()?;
    let mut options = AblationOptions::new(&args.dataset, &args.out, args.steps);
    options.seed = args.seed;
    options.variants = if args.variants.is_empty() {
        family_variants(&config)
    } else {
        args.variants.clone()
    };
    options.checkpoint_every = args.checkpoint_every.unwrap_or(args.steps.div_ceil(4));
    options.vgg19 = args.vgg19.clone();
    options.face_weights = (!args.no_face_keypoints).then(super::bundled_face_weights);
    options.eval = EvalOptions {
        max_videos: args.videos,
        masks: args.masks.clone(),
        keep_middle: args.examples,
        ..EvalOptions::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let stop = super::stop_on_ctrl_c(
        "interrupt: checkpointing the variant in training; run again to resume (Ctrl-C again to quit now)",
        "interrupted again: exiting without a final checkpoint",
    )?;

    let mut bar: Option<ProgressBar> = None;
    let report = run_ablation(&config, &options, &selected, &stop, |event| match event {
        AblationEvent::Training { variant, index, count } => {
            eprintln!(
                "[{}/{count}] {} ({variant})",
                index + 1,
                row_title(config.family(), variant)
            );
        }
        AblationEvent::Train { variant, event } => match event {
            TrainEvent::Started {
                step,
                total_steps,
                resumed_from,
                ..
            } => {
                // The perceptual loss in use is in the summary line (and a warning when it is
                // the fallback).
                if resumed_from.is_some() {
                    eprintln!("  resuming at step {step}");
                }
                let b = super::progress_bar(total_steps, variant.name());
                b.set_position(step as u64);
                bar = Some(b);
            }
            TrainEvent::Step(report) => {
                if let Some(b) = &bar {
                    b.set_position(report.step as u64);
                }
            }
            TrainEvent::Warning(message) => eprintln!("  warning: {message}"),
            TrainEvent::RolledBack {
                from_step,
                to_step,
                reason,
            } => {
                eprintln!("  rolled back from step {from_step} to {to_step}: {reason}");
            }
            TrainEvent::Finished { .. } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
            TrainEvent::Snapshot(_)
            | TrainEvent::Checkpoint { .. }
            | TrainEvent::Paused { .. }
            | TrainEvent::Resumed { .. } => {}
        },
        AblationEvent::Evaluating { done, total, .. } => {
            bar.get_or_insert_with(|| super::progress_bar(total, "evaluating"))
                .set_position(done as u64);
        }
        AblationEvent::Evaluated { summary, .. } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let l1 = summary.l1.map(|i| i.format(4)).unwrap_or_default();
            let akd = summary.akd.map(|i| i.format(3)).unwrap_or_else(|| "—".into());
            eprintln!("  L1 {l1}, AKD {akd}");
        }
    })?;
    let Some(report) = report else {
        eprintln!("stopped; run the same command again to resume");
        return Ok(ExitCode::from(130));
    };
    println!("{}", report.markdown());
    let first = &report.rows[0].report;
    let summary = first.summary();
    println!(
        "{} test videos, {} frames ({} with a salient mask), {} steps per model from seed {} | {} | {} | trained on {}",
        first.videos.len(),
        summary.frames,
        summary.masked_frames,
        args.steps,
        args.seed,
        first.masks,
        first.evaluators,
        report.trained_on
    );
    for warning in &first.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "wrote table.md, table.csv and figure.png to {} (each model's run and eval/ beside them)",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
