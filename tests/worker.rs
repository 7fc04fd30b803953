//! The engine worker headless: commands in, the expected events out; bad files become error
//! events and the worker keeps serving; training pauses and resumes; live puppeteering runs on
//! a video file standing in for a camera; exports decode back to what was encoded; an evaluation
//! makes its synthetic test set when asked, reports, and can be cancelled.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{figures, fixture, temp_dir};
use prioritycut_engine::animate::AnimateOptions;
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::config::Variant;
use prioritycut_engine::data::read_video;
use prioritycut_engine::eval::EvalOptions;
use prioritycut_engine::live::{CameraSource, CropBox};
use prioritycut_engine::render::SnapshotMap;
use prioritycut_engine::train::{Finish, TrainEvent, TrainOptions};
use prioritycut_engine::worker::{
    Command, EvalFaces, EvalRequest, Event, Job, SYNTHETIC_TEST_SET, TrainConfig, TrainRequest, TrainingState, Worker,
};

fn spawn() -> (Worker, Receiver<Event>) {
    Worker::spawn(BackendChoice::Flex, || {}).expect("worker")
}

/// The first event satisfying `want` within `seconds`; panics with what came instead.
fn wait_for(events: &Receiver<Event>, seconds: u64, mut want: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(event) if want(&event) => return event,
            Ok(event) => seen.push(format!("{event:?}").chars().take(160).collect::<String>()),
            Err(_) => break,
        }
    }
    panic!("the expected event did not come; got: {seen:#?}");
}

fn no_error(event: &Event) {
    if let Event::Error { job, message } = event {
        panic!("{job:?}: {message}");
    }
}

/// A small clip of synthetic figures at 64×64 as a GIF, and a photo of another figure.
fn clip(dir: &Path) -> (PathBuf, PathBuf) {
    let data = figures(dir, 2, 1, 8, 5);
    let frames = read_video(&data.join("test/fig-0000")).expect("frames").0;
    let gif = dir.join("driving.gif");
    prioritycut_engine::data::write_frames(&gif, &frames, 10.0, |_| {}).expect("gif");
    (gif, data.join("train/fig-0001/0000.png"))
}

fn load_fixture_model(worker: &Worker, events: &Receiver<Event>) {
    worker.send(Command::LoadModel {
        checkpoint: fixture("fomm-small/checkpoint.pth.tar"),
        config: Some(fixture("fomm-small/config.yaml")),
    });
    let event = wait_for(events, 60, |e| {
        matches!(e, Event::ModelLoaded { .. } | Event::Error { .. })
    });
    no_error(&event);
}

#[test]
fn animate_and_export_round_trip() {
    let dir = temp_dir("worker-animate");
    let (gif, photo) = clip(&dir);
    let (worker, events) = spawn();
    wait_for(&events, 10, |e| matches!(e, Event::Backend(b) if b.contains("flex")));
    load_fixture_model(&worker, &events);
    worker.send(Command::LoadSource(photo));
    no_error(&wait_for(&events, 30, |e| {
        matches!(e, Event::SourceLoaded { .. } | Event::Error { .. })
    }));
    worker.send(Command::LoadDriving(gif));
    let loaded = wait_for(&events, 30, |e| {
        matches!(e, Event::DrivingLoaded { .. } | Event::Error { .. })
    });
    let Event::DrivingLoaded { frames, fps, .. } = loaded else {
        panic!("{loaded:?}")
    };
    assert_eq!(frames.len(), 8);
    assert!((fps - 10.0).abs() < 1e-9);

    worker.send(Command::Animate(AnimateOptions {
        best_frame: true,
        ..AnimateOptions::default()
    }));
    let mut progress = 0;
    let ready = wait_for(&events, 120, |e| {
        if let Event::Progress { done, total, .. } = e {
            assert!(done <= total);
            progress += 1;
        }
        matches!(e, Event::AnimationReady { .. } | Event::Error { .. })
    });
    let Event::AnimationReady { frames, fps, .. } = ready else {
        panic!("{ready:?}")
    };
    assert_eq!(frames.len(), 8);
    assert_eq!(frames[0].dimensions(), (64, 64));
    assert!(progress >= 8, "progress was reported ({progress} events)");

    for name in ["out.mp4", "out.gif"] {
        let path = dir.join(name);
        worker.send(Command::Export(path.clone()));
        no_error(&wait_for(&events, 60, |e| {
            matches!(e, Event::Exported { .. } | Event::Error { .. })
        }));
        let (back, back_fps) = read_video(&path).expect("the export decodes");
        assert_eq!(back.len(), 8, "{name}");
        assert_eq!(back[0].dimensions(), (64, 64), "{name}");
        assert!((back_fps - fps).abs() < 0.01, "{name}: {back_fps} vs {fps}");
    }
}

#[test]
fn cameras_are_listed_off_the_callers_thread() {
    let (worker, events) = spawn();
    worker.send(Command::ListCameras);
    // This machine may have none: the answer still comes, as an event.
    let answer = wait_for(&events, 30, |e| matches!(e, Event::Cameras(_) | Event::Error { .. }));
    assert!(matches!(answer, Event::Cameras(_)), "{answer:?}");
}

/// Devices are listed off the caller's thread; an adapter that is not there is refused with
/// the device in use kept, and the loaded model still serves.
#[test]
fn devices_are_listed_and_a_missing_adapter_keeps_the_device() {
    let (worker, events) = spawn();
    worker.send(Command::ListDevices);
    let answer = wait_for(&events, 30, |e| matches!(e, Event::Devices(_) | Event::Error { .. }));
    let Event::Devices(devices) = answer else {
        panic!("{answer:?}")
    };
    assert!(devices.iter().any(|d| d.choice == BackendChoice::Flex), "{devices:?}");
    assert!(devices.iter().any(|d| d.choice == BackendChoice::Auto), "{devices:?}");

    load_fixture_model(&worker, &events);
    worker.send(Command::UseDevice(BackendChoice::WgpuAdapter(99)));
    let refused = wait_for(&events, 30, |e| matches!(e, Event::Error { .. } | Event::Backend(_)));
    let Event::Error { job, message } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(job, Job::Device);
    assert!(message.contains("there is no adapter 99"), "{message}");
    assert!(worker.device().description.starts_with("flex"), "{:?}", worker.device());
    // The model is still loaded: animating asks for the photo next, not for a model.
    worker.send(Command::Animate(AnimateOptions::default()));
    let answer = wait_for(&events, 30, |e| matches!(e, Event::Error { .. }));
    assert!(
        format!("{answer:?}").contains("choose a source photo first"),
        "{answer:?}"
    );
}

/// A GPU that runs out of memory in the middle of an animation (a real allocation failure as
/// its second frame starts, injected by an environment variable, after the first was made on
/// the GPU): the worker says so, moves to the CPU and makes the whole animation there, without
/// being asked again; before that, the GPU's first frame is announced (its kernels compile).
/// The test runs itself again in a child process that has the variable. (It used to grow the
/// fixture network to 1536×1536 until llvmpipe's 128 MiB buffers gave out: 2.5 minutes with
/// warm shader caches, 8 in CI's cold ones, for the same failure, raised by burn's allocator
/// either way.) Only where wgpu has an adapter (CI's llvmpipe).
#[test]
fn an_animation_the_gpu_cannot_hold_is_made_on_the_cpu() {
    use prioritycut_engine::animate::INJECT_GPU_FAILURE_AT_FRAME_ENV;
    const NAME: &str = "an_animation_the_gpu_cannot_hold_is_made_on_the_cpu";
    if common::wgpu_device().is_none() {
        return;
    }
    if !common::in_child_with_env(NAME, INJECT_GPU_FAILURE_AT_FRAME_ENV, "2") {
        return;
    }
    let dir = temp_dir("worker-gpu-memory");
    let (gif, photo) = clip(&dir);
    let two_frames = dir.join("two.gif");
    let frames = read_video(&gif).expect("frames").0;
    prioritycut_engine::data::write_frames(&two_frames, &frames[..2], 10.0, |_| {}).expect("gif");
    let (worker, events) = Worker::spawn(BackendChoice::Wgpu, || {}).expect("worker");
    load_fixture_model(&worker, &events);
    worker.send(Command::LoadSource(photo));
    worker.send(Command::LoadDriving(two_frames));
    worker.send(Command::Animate(AnimateOptions::default()));
    let mut fell_back = None;
    let mut backend_after = None;
    let mut preparing_said = false;
    let ready = wait_for(&events, 600, |e| {
        match e {
            // The child process's first animation on wgpu.
            Event::Progress {
                job: Job::PrepareGpu, ..
            } => preparing_said = fell_back.is_none(),
            Event::DeviceFallback { reason } => fell_back = Some(reason.clone()),
            Event::Backend(b) if fell_back.is_some() => backend_after = Some(b.clone()),
            _ => no_error(e),
        }
        matches!(e, Event::AnimationReady { .. })
    });
    assert!(preparing_said, "the GPU's first frame was announced");
    let reason = fell_back.expect("the fallback was said");
    assert!(reason.contains("out of memory"), "{reason}");
    assert!(backend_after.is_some_and(|b| b.starts_with("flex")));
    let Event::AnimationReady { frames, .. } = ready else {
        unreachable!()
    };
    assert_eq!(frames.len(), 2, "every frame, made again on the CPU");
    assert!(worker.device().description.starts_with("flex"));
}

/// Live on a GPU that runs out of memory (a real allocation failure as the first frame starts,
/// injected by an environment variable): the worker says so, moves to the CPU and live starts
/// again there by itself, on the same camera. Only where wgpu has an adapter (CI's llvmpipe).
#[test]
fn live_the_gpu_cannot_hold_goes_on_on_the_cpu() {
    use prioritycut_engine::animate::INJECT_GPU_FAILURE_AT_FRAME_ENV;
    const NAME: &str = "live_the_gpu_cannot_hold_goes_on_on_the_cpu";
    if common::wgpu_device().is_none() {
        return;
    }
    if !common::in_child_with_env(NAME, INJECT_GPU_FAILURE_AT_FRAME_ENV, "1") {
        return;
    }
    let dir = temp_dir("worker-gpu-live");
    let (gif, photo) = clip(&dir);
    let (worker, events) = Worker::spawn(BackendChoice::Wgpu, || {}).expect("worker");
    load_fixture_model(&worker, &events);
    worker.send(Command::LoadSource(photo));
    worker.send(Command::StartLive {
        camera: CameraSource::VideoFile(gif),
        options: AnimateOptions::default(),
    });
    let (mut fell_back, mut backend_after, mut starts) = (None, None, 0);
    let frame = wait_for(&events, 600, |e| {
        match e {
            Event::DeviceFallback { reason } => fell_back = Some(reason.clone()),
            Event::Backend(b) if fell_back.is_some() => backend_after = Some(b.clone()),
            Event::LiveStarted { .. } => starts += 1,
            Event::LiveStopped { reason } => panic!("live stopped: {reason:?}"),
            _ => no_error(e),
        }
        matches!(e, Event::Live(_))
    });
    let reason = fell_back.expect("the fallback was said");
    assert!(reason.contains("out of memory"), "{reason}");
    assert!(backend_after.is_some_and(|b| b.starts_with("flex")));
    assert_eq!(starts, 2, "started on the GPU, then again on the CPU");
    let Event::Live(frame) = frame else { unreachable!() };
    assert_eq!(frame.result.dimensions(), (64, 64), "the photo's size");
    worker.send(Command::StopLive);
    let stopped = wait_for(&events, 60, |e| matches!(e, Event::LiveStopped { .. }));
    assert!(matches!(stopped, Event::LiveStopped { reason: None }), "{stopped:?}");
}

/// The GPU runs out of its memory under a run the window started (a real allocation failure,
/// injected at the first step): the worker says so, moves to the CPU, and the run goes on there
/// from its last checkpoint to its end. The injection is an environment variable, which a test
/// cannot set in its own process (no unsafe code): the test runs itself again, alone, in a child
/// process that has it. Only where wgpu has an adapter (CI's llvmpipe).
#[test]
fn a_run_the_gpu_fails_under_goes_on_on_the_cpu() {
    use prioritycut_engine::train::INJECT_GPU_FAILURE_ENV;
    const NAME: &str = "a_run_the_gpu_fails_under_goes_on_on_the_cpu";
    if common::wgpu_device().is_none() {
        return;
    }
    if !common::in_child_with_env(NAME, INJECT_GPU_FAILURE_ENV, "1") {
        return;
    }
    let dir = temp_dir("worker-gpu-train");
    let data = figures(&dir, 2, 1, 8, 2);
    let mut config = FommConfig::from_yaml_file(fixture("fomm-small/config.yaml")).expect("config");
    config.train.batch_size = 1;
    let run = dir.join("run");
    let mut options = TrainOptions::new(&data, &run);
    options.steps = Some(2);
    options.checkpoint_every = 2;
    let (worker, events) = Worker::spawn(BackendChoice::Wgpu, || {}).expect("worker");
    worker.send(Command::StartTraining(Box::new(TrainRequest {
        config: TrainConfig::Given(Box::new(config)),
        variant: Some(Variant::Fomm),
        mode: None,
        options,
    })));
    let (mut fell_back, mut backend_after, mut started) = (None, None, Vec::new());
    let ended = wait_for(&events, 300, |e| {
        match e {
            Event::DeviceFallback { reason } => fell_back = Some(reason.clone()),
            Event::Backend(b) if fell_back.is_some() => backend_after = Some(b.clone()),
            Event::Training(TrainEvent::Started {
                backend, resumed_from, ..
            }) => started.push((backend.clone(), resumed_from.clone())),
            _ => no_error(e),
        }
        matches!(
            e,
            Event::TrainingState(TrainingState::Finished(_) | TrainingState::Failed)
        )
    });
    assert!(
        matches!(ended, Event::TrainingState(TrainingState::Finished(Finish::Completed))),
        "{ended:?}"
    );
    let reason = fell_back.expect("the fallback was said");
    assert!(reason.contains("out of memory"), "{reason}");
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(
        started[0].0.starts_with("wgpu") && started[0].1.is_none(),
        "{started:?}"
    );
    assert!(
        started[1].0.starts_with("flex")
            && started[1]
                .1
                .as_ref()
                .is_some_and(|from| from.ends_with("step-00000000")),
        "{started:?}"
    );
    assert!(run.join("checkpoints/step-00000002/model.bpk").is_file());
    // The studio moves beside the run: its Backend may come after the run's end.
    if backend_after.is_none() {
        let Event::Backend(b) = wait_for(&events, 60, |e| matches!(e, Event::Backend(_))) else {
            unreachable!()
        };
        backend_after = Some(b);
    }
    assert!(backend_after.is_some_and(|b| b.starts_with("flex")));
}

#[test]
fn bad_files_become_error_events_and_the_worker_goes_on() {
    let dir = temp_dir("worker-bad");
    let (worker, events) = spawn();
    worker.send(Command::Animate(AnimateOptions::default()));
    let error = wait_for(&events, 10, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("load a model first"), "{error:?}");
    assert!(matches!(error, Event::Error { job: Job::Animate, .. }), "{error:?}");

    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    worker.send(Command::LoadSource(broken));
    let error = wait_for(&events, 10, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("broken.png"), "{error:?}");
    assert!(
        matches!(
            error,
            Event::Error {
                job: Job::LoadSource,
                ..
            }
        ),
        "{error:?}"
    );

    let text_video = dir.join("clip.mp4");
    std::fs::write(&text_video, b"hello").expect("write");
    worker.send(Command::LoadDriving(text_video));
    let error = wait_for(&events, 10, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("clip.mp4"), "{error:?}");

    let cut = dir.join("cut.pth.tar");
    let bytes = std::fs::read(fixture("fomm-small/checkpoint.pth.tar")).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    worker.send(Command::LoadModel {
        checkpoint: cut,
        config: Some(fixture("fomm-small/config.yaml")),
    });
    let error = wait_for(&events, 20, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("cut.pth.tar"), "{error:?}");
    assert!(
        matches!(
            error,
            Event::Error {
                job: Job::LoadModel,
                ..
            }
        ),
        "{error:?}"
    );

    // Still serving.
    load_fixture_model(&worker, &events);
    worker.send(Command::PauseTraining);
    let error = wait_for(&events, 10, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("no training is running"), "{error:?}");
    assert!(matches!(error, Event::Error { job: Job::Training, .. }), "{error:?}");
}

#[test]
fn training_pauses_resumes_checkpoints_and_stops() {
    let dir = temp_dir("worker-train");
    let data = figures(&dir, 4, 1, 8, 2);
    let mut config = FommConfig::from_yaml_file(fixture("fomm-small/config.yaml")).expect("config");
    config.prioritycut.variant = Variant::UnetPrioritycut;
    config.train.batch_size = 2;
    let run = dir.join("run");
    let mut options = TrainOptions::new(&data, &run);
    options.steps = Some(100_000);
    options.checkpoint_every = 100_000;
    options.snapshot_every = Some(Duration::ZERO);
    let (worker, events) = spawn();
    worker.send(Command::StartTraining(Box::new(TrainRequest {
        config: TrainConfig::Given(Box::new(config)),
        variant: None,
        mode: None,
        options,
    })));
    wait_for(&events, 60, |e| {
        matches!(e, Event::TrainingState(TrainingState::Running))
    });
    let snapshot = wait_for(&events, 60, |e| matches!(e, Event::Training(TrainEvent::Snapshot(_))));
    if let Event::Training(TrainEvent::Snapshot(s)) = &snapshot {
        // FOMM predicts one occlusion map; the coarser ones are TPSMM's.
        for map in SnapshotMap::ALL {
            let expected = !map.is_coarser_occlusion();
            assert_eq!(s.map(map).is_some(), expected, "{}", map.name());
        }
    }
    wait_for(
        &events,
        60,
        |e| matches!(e, Event::Training(TrainEvent::Step(r)) if r.step >= 2),
    );

    worker.send(Command::PauseTraining);
    wait_for(&events, 60, |e| {
        matches!(e, Event::TrainingState(TrainingState::Paused))
    });
    // Paused: no step for a while (a step takes well under a second here).
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Ok(event) = events.recv_timeout(left) {
            assert!(
                !matches!(event, Event::Training(TrainEvent::Step(_))),
                "stepped while paused"
            );
        }
    }
    // Start while paused: refused with the reason, and the run stays paused.
    worker.send(Command::StartTraining(Box::new(TrainRequest {
        config: TrainConfig::Given(Box::new(
            FommConfig::from_yaml_file(fixture("fomm-small/config.yaml")).expect("config"),
        )),
        variant: None,
        mode: None,
        options: TrainOptions::new(&data, dir.join("another-run")),
    })));
    let refused = wait_for(&events, 10, |e| matches!(e, Event::Error { .. }));
    assert!(
        matches!(&refused, Event::Error { job: Job::Training, message } if message.contains("already going")),
        "{refused:?}"
    );
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Ok(event) = events.recv_timeout(left) {
            assert!(
                !matches!(
                    event,
                    Event::Training(TrainEvent::Step(_)) | Event::TrainingState(TrainingState::Running)
                ),
                "a refused start resumed the paused run: {event:?}"
            );
        }
    }
    assert!(!dir.join("another-run").exists(), "the refused run touched its folder");
    worker.send(Command::CheckpointNow);
    let checkpoint = wait_for(&events, 60, |e| {
        matches!(e, Event::Training(TrainEvent::Checkpoint { .. }))
    });
    let Event::Training(TrainEvent::Checkpoint { step, path }) = checkpoint else {
        unreachable!()
    };
    assert!(path.join("model.bpk").is_file());
    worker.send(Command::ResumeTraining);
    wait_for(
        &events,
        60,
        |e| matches!(e, Event::Training(TrainEvent::Step(r)) if r.step > step),
    );
    worker.send(Command::StopTraining);
    wait_for(&events, 60, |e| {
        matches!(e, Event::TrainingState(TrainingState::Finished(Finish::Stopped)))
    });
    assert!(run.join("losses.csv").is_file());
}

/// The window's training takes a TPSMM config file as it takes FOMM's: the paper's model on
/// TPSMM trains, its snapshots hold every map, and the finished run opens as a TPSMM model.
#[test]
fn training_a_tpsmm_config_and_opening_the_run() {
    let dir = temp_dir("worker-train-tpsmm");
    let data = figures(&dir, 4, 1, 8, 2);
    let run = dir.join("run");
    let mut options = TrainOptions::new(&data, &run);
    options.steps = Some(2);
    options.snapshot_every = Some(Duration::ZERO);
    let (worker, events) = spawn();
    worker.send(Command::StartTraining(Box::new(TrainRequest {
        config: TrainConfig::File(fixture("tpsmm-train/config.yaml")),
        variant: Some(Variant::UnetPrioritycut),
        mode: None,
        options,
    })));
    let snapshot = wait_for(&events, 120, |e| {
        matches!(e, Event::Training(TrainEvent::Snapshot(_)) | Event::Error { .. })
    });
    no_error(&snapshot);
    if let Event::Training(TrainEvent::Snapshot(s)) = &snapshot {
        for map in SnapshotMap::ALL {
            assert!(s.map(map).is_some(), "the snapshot lacks {}", map.name());
        }
    }
    let finished = wait_for(&events, 120, |e| {
        matches!(
            e,
            Event::TrainingState(TrainingState::Finished(_)) | Event::Error { .. }
        )
    });
    assert!(
        matches!(
            finished,
            Event::TrainingState(TrainingState::Finished(Finish::Completed))
        ),
        "{finished:?}"
    );
    let losses = std::fs::read_to_string(run.join("losses.csv")).expect("losses.csv");
    let header: Vec<&str> = losses.lines().next().expect("header").split(',').collect();
    let last: Vec<&str> = losses.lines().last().expect("a step").split(',').collect();
    let warp = header.iter().position(|h| *h == "warp_loss").expect("warp_loss column");
    assert!(last[warp].parse::<f64>().is_ok_and(f64::is_finite), "{losses}");

    worker.send(Command::LoadModel {
        checkpoint: run.clone(),
        config: None,
    });
    let loaded = wait_for(&events, 60, |e| {
        matches!(e, Event::ModelLoaded { .. } | Event::Error { .. })
    });
    no_error(&loaded);
    assert!(format!("{loaded:?}").contains("TPSMM"), "{loaded:?}");
}

#[test]
fn live_puppeteering_on_a_video_file_and_a_missing_camera() {
    let dir = temp_dir("worker-live");
    let (gif, photo) = clip(&dir);
    let (worker, events) = spawn();
    load_fixture_model(&worker, &events);
    worker.send(Command::LoadSource(photo));
    no_error(&wait_for(&events, 30, |e| {
        matches!(e, Event::SourceLoaded { .. } | Event::Error { .. })
    }));

    worker.send(Command::StartLive {
        camera: CameraSource::Webcam { index: 99 },
        options: AnimateOptions::default(),
    });
    let error = wait_for(&events, 20, |e| matches!(e, Event::Error { .. }));
    assert!(format!("{error:?}").contains("camera 99"), "{error:?}");
    assert!(matches!(error, Event::Error { job: Job::Live, .. }), "{error:?}");

    worker.send(Command::StartLive {
        camera: CameraSource::VideoFile(gif),
        options: AnimateOptions::default(),
    });
    worker.send(Command::SetLiveView {
        mirror: true,
        crop: CropBox {
            size: 0.5,
            ..CropBox::default()
        },
        follow_face: false,
    });
    let mut frames = 0;
    let last = wait_for(&events, 120, |e| {
        no_error(e);
        if let Event::Live(frame) = e {
            frames += 1;
            assert_eq!(frame.result.dimensions(), (64, 64));
        }
        frames >= 5
    });
    let Event::Live(frame) = last else { unreachable!() };
    assert!(frame.calibrated, "the first frame is the neutral pose");
    assert_eq!(frame.crop.2, 32, "half of the 64-px frame");
    assert!(frame.fps > 0.0);
    worker.send(Command::Calibrate);
    worker.send(Command::StopLive);
    let stopped = wait_for(&events, 30, |e| matches!(e, Event::LiveStopped { .. }));
    assert!(matches!(stopped, Event::LiveStopped { reason: None }), "{stopped:?}");
}

/// Live with faces: the photo's face square is animated and pasted back (the result has the
/// photo's size and its pixels outside the square), the camera's square follows the face, and
/// the results are served as MJPEG until the stream is switched off.
#[test]
fn live_follows_the_face_pastes_it_back_and_streams() {
    let (worker, events) = spawn();
    worker.send(Command::SetLiveStream(Some("127.0.0.1:0".into())));
    let Event::LiveStream { url: Some(url), .. } = wait_for(&events, 10, |e| matches!(e, Event::LiveStream { .. }))
    else {
        panic!("no stream")
    };
    // Switched off, the port is free; held by another listener, it is refused, named.
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    worker.send(Command::SetLiveStream(None));
    let off = wait_for(&events, 10, |e| matches!(e, Event::LiveStream { .. }));
    assert!(matches!(off, Event::LiveStream { url: None, error: None }), "{off:?}");
    let holder = std::net::TcpListener::bind(&address).expect("the port is free again");
    worker.send(Command::SetLiveStream(Some(address.clone())));
    let refused = wait_for(&events, 10, |e| matches!(e, Event::LiveStream { .. }));
    let Event::LiveStream {
        url: None,
        error: Some(error),
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert!(error.contains(&address), "{error}");
    drop(holder);
    worker.send(Command::SetLiveStream(Some("127.0.0.1:0".into())));
    wait_for(&events, 10, |e| matches!(e, Event::LiveStream { url: Some(_), .. }));

    worker.send(Command::LoadFaceDetector(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mtcnn"),
    ));
    load_fixture_model(&worker, &events);
    let photo_path = fixture("mtcnn/astronaut.png");
    let photo = image::open(&photo_path).expect("photo").to_rgb8();
    worker.send(Command::LoadSource(photo_path));
    no_error(&wait_for(&events, 30, |e| {
        matches!(e, Event::SourceLoaded { .. } | Event::Error { .. })
    }));
    worker.send(Command::StartLive {
        camera: CameraSource::VideoFile(fixture("media/carphone-audio.mp4")),
        options: AnimateOptions::default(),
    });
    worker.send(Command::SetLiveView {
        mirror: false,
        crop: CropBox::default(),
        follow_face: true,
    });
    let started = wait_for(&events, 60, |e| {
        no_error(e);
        matches!(e, Event::LiveStarted { .. })
    });
    let Event::LiveStarted { framing } = started else {
        unreachable!()
    };
    let (_, square) = framing.source_face.expect("the astronaut's face");
    let mut frames = 0;
    let last = wait_for(&events, 120, |e| {
        no_error(e);
        if let Event::Live(frame) = e {
            frames += 1;
            assert_eq!(frame.result.dimensions(), (512, 512), "the photo's size");
            assert_eq!(frame.stream_clients, Some(0));
        }
        frames >= 5
    });
    let Event::Live(frame) = last else { unreachable!() };
    assert!(frame.following, "the camera's face is found");
    let face = frame.face.expect("a face box");
    let (x, y, side) = frame.crop;
    let (fx, fy) = ((face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0);
    assert!(
        (fx - (x as f32 + side as f32 / 2.0)).abs() < side as f32 * 0.2
            && (fy - (y as f32 + side as f32 / 2.0)).abs() < side as f32 * 0.2,
        "the square {:?} is around the face {face:?}",
        frame.crop
    );
    assert!(side < 144, "a face square, not the whole 176×144 frame: {side}");
    let outside = |px: u32, py: u32| {
        let (px, py) = (i64::from(px), i64::from(py));
        px < square.x0
            || py < square.y0
            || px >= square.x0 + i64::from(square.side)
            || py >= square.y0 + i64::from(square.side)
    };
    for (px, py, pixel) in frame.result.enumerate_pixels() {
        if outside(px, py) {
            assert_eq!(pixel, photo.get_pixel(px, py), "outside the square at ({px}, {py})");
        }
    }
    worker.send(Command::StopLive);
    wait_for(&events, 30, |e| matches!(e, Event::LiveStopped { .. }));
}

#[test]
fn evaluation_makes_its_test_set_reports_and_cancels() {
    let dir = temp_dir("worker-eval");
    let data = dir.join("synthetic");
    let (worker, events) = spawn();
    let request = |max_videos: usize| {
        Command::Evaluate(Box::new(EvalRequest {
            checkpoint: fixture("fomm-small/checkpoint.pth.tar"),
            config: Some(fixture("fomm-small/config.yaml")),
            dataset: data.clone(),
            options: EvalOptions {
                max_videos: Some(max_videos),
                ..EvalOptions::default()
            },
            synthetic_if_missing: true,
            faces: None,
        }))
    };
    worker.send(request(1));
    let mut made = 0;
    let event = wait_for(&events, 120, |e| {
        if let Event::Progress {
            job: Job::MakeTestSet,
            done,
            ..
        } = e
        {
            made = *done;
        }
        matches!(e, Event::Evaluated { .. } | Event::Error { .. })
    });
    no_error(&event);
    assert_eq!(
        made,
        SYNTHETIC_TEST_SET.0 + 1,
        "every video of the test set was written"
    );
    let Event::Evaluated { report, .. } = event else {
        unreachable!()
    };
    assert_eq!(report.videos.len(), 1);
    assert_eq!(report.videos[0].frames.len(), SYNTHETIC_TEST_SET.1);
    assert!(
        report.summary().mkr.is_some(),
        "the synthetic set brings the joint detector"
    );

    // A long one, cancelled at once; a second request while it runs is refused.
    worker.send(request(SYNTHETIC_TEST_SET.0));
    worker.send(request(1));
    let event = wait_for(&events, 60, |e| matches!(e, Event::Error { .. }));
    let Event::Error { message, .. } = event else {
        unreachable!()
    };
    assert!(message.contains("already running"), "{message}");
    worker.send(Command::CancelEvaluation);
    wait_for(&events, 120, |e| matches!(e, Event::Cancelled(Job::Evaluate)));
    // A missing dataset is an error event naming it, and the worker goes on.
    worker.send(Command::Evaluate(Box::new(EvalRequest {
        checkpoint: fixture("fomm-small/checkpoint.pth.tar"),
        config: Some(fixture("fomm-small/config.yaml")),
        dataset: dir.join("no-dataset"),
        options: EvalOptions::default(),
        synthetic_if_missing: false,
        faces: None,
    })));
    let event = wait_for(&events, 60, |e| matches!(e, Event::Error { .. }));
    let Event::Error { message, .. } = event else {
        unreachable!()
    };
    assert!(message.contains("no-dataset"), "{message}");

    // Real frames (a dataset with no evaluator of its own): faces' landmarks give AKD and MKR.
    let real = dir.join("real");
    for split in ["train", "test"] {
        let clip = real.join(split).join("carphone");
        std::fs::create_dir_all(&clip).expect("dir");
        for (i, name) in ["carphone-000.png", "carphone-060.png", "carphone-119.png"]
            .iter()
            .enumerate()
        {
            std::fs::copy(fixture("mtcnn").join(name), clip.join(format!("{i:04}.png"))).expect("frame");
        }
    }
    worker.send(Command::Evaluate(Box::new(EvalRequest {
        checkpoint: fixture("fomm-small/checkpoint.pth.tar"),
        config: Some(fixture("fomm-small/config.yaml")),
        dataset: real,
        options: EvalOptions::default(),
        synthetic_if_missing: false,
        faces: Some(EvalFaces {
            weights: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mtcnn"),
            landmarks: true,
            crop: true,
        }),
    })));
    let event = wait_for(&events, 120, |e| {
        matches!(e, Event::Evaluated { .. } | Event::Error { .. })
    });
    no_error(&event);
    let Event::Evaluated { report, .. } = event else {
        unreachable!()
    };
    assert!(report.evaluators.contains("MTCNN"), "{}", report.evaluators);
    assert!(report.summary().mkr.is_some(), "MKR is measured");
    assert!(
        report.warnings.iter().all(|w| !w.contains("no face")),
        "the clip was cut around its face: {:?}",
        report.warnings
    );
}
