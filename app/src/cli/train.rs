//! `prioritycut train --config C --dataset DIR --variant V --out RUN [--resume]`; with a TPSMM
//! config, `--mode train-avd --checkpoint TRAINED` trains its AVD network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prioritycut_engine::EngineError;
use prioritycut_engine::backend::{self, BackendChoice};
use prioritycut_engine::checkpoint::RunDir;
use prioritycut_engine::config::{TrainingMode, Variant};
use prioritycut_engine::train::{Finish, TrainEvent, TrainOptions, TrainingConfig, train};

use super::DeviceArgs;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// FOMM's or TPSMM's YAML config (model, train_params, prioritycut_params). With --resume
    /// it may be left out: the run's own config.yaml is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset in FOMM's layout (DIR/train, DIR/test); see `prioritycut make-dataset`.
    #[arg(long)]
    pub dataset: PathBuf,
    /// fomm | fomm-adv | unet | unet-cutmix | unet-prioritycut (default: the config's, else
    /// unet-prioritycut).
    #[arg(long, value_parser = parse_variant)]
    pub variant: Option<Variant>,
    /// Run folder: checkpoints, losses.csv, snapshots.
    #[arg(long)]
    pub out: PathBuf,
    /// With a TPSMM config, what the run trains (TPSMM's `run.py --mode`): `train` (its
    /// networks, train.py) or `train-avd` (its AVD network on the trained model --checkpoint
    /// names, train_avd.py). Default: the config's `mode`, else train.
    #[arg(long, value_enum)]
    pub mode: Option<TrainMode>,
    /// The trained TPSMM model `--mode train-avd` starts from: an official .pth.tar, a .bpk, a
    /// run folder or one of its checkpoint folders.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Total steps (default: num_epochs epochs of the dataset).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub overrides: TrainOverrides,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Checkpoints kept (the newest).
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Seconds between snapshot sheets written to RUN/snapshots (0: none).
    #[arg(long, default_value_t = 30.0)]
    pub snapshot_seconds: f64,
    /// Random seed of the run (initial weights, data order, augmentation): same seed, same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// torchvision VGG19 weights (vgg19-dcbb9e9d.pth or .safetensors) for the perceptual loss
    /// (FOMM's and TPSMM's). Without them a pixel-pyramid L1 stands in, and the run says so.
    #[arg(long)]
    pub vgg19: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// What a TPSMM run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainMode {
    Train,
    TrainAvd,
}

/// Config values a command line may override, shared by `train` and `ablate`.
#[derive(Debug, Args)]
pub struct TrainOverrides {
    /// Overrides train_params.batch_size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Overrides train_params.num_repeats.
    #[arg(long)]
    pub num_repeats: Option<usize>,
}

impl TrainOverrides {
    pub fn apply(&self, config: &mut TrainingConfig) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch_size != Some(0), "--batch-size must be at least 1");
        anyhow::ensure!(self.num_repeats != Some(0), "--num-repeats must be at least 1");
        config.set_batches(self.batch_size, self.num_repeats);
        Ok(())
    }
}

pub(super) fn parse_variant(text: &str) -> Result<Variant, String> {
    text.parse().map_err(|e: EngineError| e.to_string())
}

fn load_config(args: &TrainArgs) -> anyhow::Result<TrainingConfig> {
    let (path, replaced) = RunDir::config_to_train_with(&args.out, args.resume, args.config.as_deref())?;
    if replaced {
        eprintln!("note: resuming with the run's own {}", path.display());
    }
    let (mut config, ignored_keys) = TrainingConfig::read_yaml_file(&path)?;
    super::report_ignored_keys(&ignored_keys);
    if let Some(variant) = args.variant {
        config.set_variant(variant);
    }
    if let Some(mode) = args.mode {
        config.set_mode(match mode {
            TrainMode::Train => TrainingMode::Train,
            TrainMode::TrainAvd => TrainingMode::TrainAvd,
        })?;
    }
    args.overrides.apply(&mut config)?;
    Ok(config)
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let selected = args.device.open_for_training()?;
    let config = load_config(&args)?;
    let trains_avd = config.trains_avd();
    let mut options = TrainOptions::new(&args.dataset, &args.out);
    options.steps = args.steps;
    options.checkpoint_every = args.checkpoint_every;
    options.keep_checkpoints = args.keep_checkpoints;
    options.seed = args.seed;
    options.vgg19 = args.vgg19.clone();
    options.resume = args.resume;
    options.start_from = args.checkpoint.clone();
    options.snapshot_every = (args.snapshot_seconds > 0.0).then(|| Duration::from_secs_f64(args.snapshot_seconds));

    // First Ctrl-C: finish the step, checkpoint, exit. A second one: leave at once.
    let stop = super::stop_on_ctrl_c(
        "interrupt: saving a checkpoint before exiting (Ctrl-C again to quit now)",
        "interrupted again: exiting without a final checkpoint",
    )?;

    let mut progress = Progress {
        bar: None,
        last_print: Instant::now() - Duration::from_secs(60),
        print_every: if console_is_interactive() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        },
        trains_avd,
        run_dir: args.out.clone(),
    };
    let trained = match train(config.clone(), options.clone(), &selected, &*stop, |event| {
        progress.show(event)
    }) {
        // The GPU itself failed (out of its memory, the device lost): the run goes on on the
        // CPU from its last checkpoint (a new run saved one before its first step).
        Err(EngineError::Gpu(failure)) => {
            progress.clear();
            eprintln!("note: {failure}: training goes on on the CPU (flex) from the run's last checkpoint");
            options.resume = true;
            let cpu = backend::select(BackendChoice::Flex)?;
            train(config, options, &cpu, &*stop, |event| progress.show(event))
        }
        trained => trained,
    };
    let (finish, _) = trained?;
    println!(
        "run folder: {} (losses.csv, checkpoints/, snapshots/, config.yaml)",
        args.out.display()
    );
    Ok(match finish {
        Finish::Completed => ExitCode::SUCCESS,
        Finish::Stopped => ExitCode::from(130),
    })
}

/// The run's progress on the terminal: a bar, and the losses every few seconds off one.
struct Progress {
    bar: Option<ProgressBar>,
    last_print: Instant,
    print_every: Duration,
    trains_avd: bool,
    run_dir: PathBuf,
}

impl Progress {
    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started {
                step,
                total_steps,
                steps_per_epoch,
                variant,
                backend,
                perceptual,
                resumed_from,
            } => {
                if self.trains_avd {
                    eprintln!("training TPSMM's AVD network on {backend}");
                } else {
                    eprintln!("training {variant} on {backend}");
                    eprintln!("perceptual loss: {perceptual}");
                }
                if let Some(dir) = resumed_from {
                    eprintln!("resumed from {} (step {step})", dir.display());
                }
                eprintln!(
                    "{total_steps} steps ({steps_per_epoch} per epoch), run folder {}",
                    self.run_dir.display()
                );
                let b = ProgressBar::new(total_steps as u64);
                b.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_position(step as u64);
                self.bar = Some(b);
            }
            TrainEvent::Step(report) => {
                if let Some(b) = &self.bar {
                    b.set_position(report.step as u64);
                    if self.last_print.elapsed() >= self.print_every {
                        self.last_print = Instant::now();
                        let losses: Vec<String> = report
                            .losses
                            .iter()
                            .map(|(name, value)| format!("{name} {value:.4}"))
                            .collect();
                        b.set_message(format!("epoch {} | {}", report.epoch, losses.join(" | ")));
                        if !console_is_interactive() {
                            eprintln!(
                                "step {}/{}: {}",
                                report.step,
                                b.length().unwrap_or(0),
                                losses.join(", ")
                            );
                        }
                    }
                }
            }
            // The trainer writes the sheet into RUN/snapshots itself.
            TrainEvent::Snapshot(_) => {}
            TrainEvent::Checkpoint { step, path } => {
                say(&self.bar, format!("checkpoint at step {step}: {}", path.display()));
            }
            TrainEvent::Warning(message) => say(&self.bar, format!("warning: {message}")),
            TrainEvent::RolledBack {
                from_step,
                to_step,
                reason,
            } => say(
                &self.bar,
                format!("rolled back from step {from_step} to {to_step}: {reason}"),
            ),
            TrainEvent::Finished { step, finish } => {
                self.clear();
                match finish {
                    Finish::Completed => eprintln!("finished at step {step}"),
                    Finish::Stopped => eprintln!("stopped at step {step}; resume with --resume"),
                }
            }
            TrainEvent::Paused { .. } | TrainEvent::Resumed { .. } => {}
        }
    }

    /// Takes the bar off the terminal (a run ended, or moves to the CPU).
    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// A line above the progress bar (a hidden bar, off a terminal, would swallow it).
fn say(bar: &Option<ProgressBar>, line: String) {
    match bar {
        Some(b) if !b.is_hidden() => b.println(line),
        _ => eprintln!("{line}"),
    }
}

fn console_is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
