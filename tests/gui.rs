//! The desktop app, driven through egui_kittest with the real engine worker: the bundled sample
//! animates on first start; a dropped photo loads and a broken file shows its error; the result
//! exports; a training run shows its maps and pauses; the photo follows a video standing in for
//! a camera and is streamed as MJPEG; an evaluation of the bundled model shows its table row and worst cases.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{figures, fixture, temp_dir};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use prioritycut::gui::{GuiOptions, StudioApp, Workspace};
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::data::read_video;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn app(options: GuiOptions) -> Harness<'static, StudioApp> {
    Harness::builder()
        .with_size([1280.0, 900.0])
        .with_max_steps(10_000)
        .build_eframe(move |cc| StudioApp::new(cc, options))
}

fn options(workspace: Workspace) -> GuiOptions {
    let mut options = GuiOptions::new(BackendChoice::Flex);
    options.workspace = Some(workspace);
    options.assets = assets();
    options.fresh = true;
    options
}

/// A file dropped on the window, as winit's integration hands it to egui.
#[derive(Debug)]
struct DroppedPath(PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(harness: &mut Harness<'static, StudioApp>, path: PathBuf) {
    harness
        .input_mut()
        .dropped_files
        .push(std::sync::Arc::new(DroppedPath(path)));
}

/// Steps the UI (the worker runs on its own threads) until `done`, within `seconds`.
fn step_until(harness: &mut Harness<'static, StudioApp>, seconds: u64, what: &str, done: impl Fn(&StudioApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done(harness.state()) {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {seconds} s; log: {:#?}",
            harness.state().log
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.step();
}

#[test]
fn the_bundled_sample_animates_on_first_start_and_exports() {
    let mut harness = app(options(Workspace::Animate));
    step_until(&mut harness, 180, "the bundled animation", |app| {
        app.animate.has_result()
    });
    let app = harness.state();
    assert!(app.animate.model.is_some());
    assert_eq!(app.animate.result_frames(), app.animate.driving_frames());
    assert!(
        harness.query_by_label_contains("animated").is_some(),
        "the status says it animated"
    );

    let folder = temp_dir("gui-export");
    let out = folder.join("result.mp4");
    harness.state_mut().animate.settings.export = out.display().to_string();
    harness.step();
    harness.get_by_label("Export").click();
    step_until(&mut harness, 60, "the export", |app| {
        app.log.iter().any(|l| l.contains("exported"))
    });
    let (frames, _) = read_video(&out).expect("the exported MP4 decodes");
    assert_eq!(frames.len(), harness.state().animate.result_frames());

    // Scrubbing pauses playback on the chosen frame; the ▶ button plays again.
    harness.get_by_label("⏸").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("▶").is_some());
}

/// A real photo and a real clip with sound: `auto` finds both faces, animates the photo's face
/// square and pastes it back at the photo's size; the boxes are drawn; the MP4 keeps the sound.
#[test]
fn a_face_photo_animates_at_its_own_size_and_exports_with_sound() {
    let mut harness = app(options(Workspace::Animate));
    step_until(&mut harness, 180, "the bundled animation", |app| {
        app.animate.has_result()
    });
    let photo = fixture("mtcnn").join("astronaut.png");
    drop_file(&mut harness, photo);
    drop_file(&mut harness, fixture("media").join("carphone-audio.mp4"));
    step_until(&mut harness, 60, "the photo and the clip", |app| {
        app.animate.driving_frames() == 45
    });
    assert!(harness.query_by_label("auto").is_some(), "the face modes are offered");
    harness.get_by_label("▶ Animate").click();
    step_until(&mut harness, 180, "the face animation", |app| {
        app.animate.result_frames() == 45
    });
    let app = harness.state();
    assert_eq!(app.animate.result_size(), Some((512, 512)));
    let framing = app.animate.framing().expect("framing");
    let (face, crop) = framing.source_face.expect("the photo's face");
    assert!(face.score > 0.99 && crop.side > 100, "{face:?} {crop:?}");
    assert!(framing.driving_face.is_some(), "the clip's face");

    let folder = temp_dir("gui-face-export");
    let out = folder.join("face.mp4");
    harness.state_mut().animate.settings.export = out.display().to_string();
    harness.step();
    harness.get_by_label("Export").click();
    step_until(&mut harness, 60, "the export", |app| {
        app.animate.status.as_deref().is_some_and(|s| s.contains("exported"))
    });
    let status = harness.state().animate.status.clone().unwrap_or_default();
    assert!(status.contains("aac sound"), "{status}");
    let audio = prioritycut_engine::data::ffmpeg::decode_audio(&out)
        .expect("decodes")
        .expect("the export has sound");
    assert!((audio.seconds() - 45.0 / 29.97).abs() < 0.07, "{audio:?}");
}

#[test]
fn dropped_files_load_and_a_broken_one_is_reported() {
    let dir = temp_dir("gui-drop");
    let mut harness = app(options(Workspace::Animate));
    step_until(&mut harness, 120, "the model", |app| app.animate.model.is_some());
    let photo = assets().join("sample/source.png");
    drop_file(&mut harness, photo);
    step_until(&mut harness, 60, "the dropped photo", |app| app.animate.source_loaded());

    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot an image").expect("write");
    drop_file(&mut harness, broken);
    step_until(&mut harness, 60, "the error", |app| app.animate.error.is_some());
    let error = harness.state().animate.error.clone().unwrap_or_default();
    assert!(error.contains("broken.png"), "the error names the file: {error}");
    assert!(harness.query_by_label(&error).is_some(), "the error is shown: {error}");

    let notes = dir.join("notes.txt");
    std::fs::write(&notes, b"hello").expect("write");
    drop_file(&mut harness, notes);
    harness.run_steps(3);
    assert!(harness.state().log.iter().any(|l| l.contains("notes.txt")));
}

#[test]
fn training_shows_its_maps_pauses_and_stops() {
    let dir = temp_dir("gui-train");
    let data = figures(&dir, 4, 1, 8, 9);
    let mut harness = app(options(Workspace::Train));
    {
        let train = &mut harness.state_mut().train.settings;
        train.dataset = data.display().to_string();
        train.config = fixture("fomm-small/config.yaml").display().to_string();
        train.run = dir.join("run").display().to_string();
        train.steps = 100_000;
    }
    harness.step();
    harness.get_by_label("▶ Start").click();
    step_until(&mut harness, 180, "a snapshot", |app| {
        app.train.snapshot().is_some() && app.train.step >= 2
    });
    for label in [
        "prioritycut mask",
        "decoder real",
        "decoder fake",
        "occlusion",
        "Losses",
    ] {
        assert!(harness.query_by_label(label).is_some(), "{label} is shown");
    }
    harness.get_by_label("⏸ Pause").click();
    step_until(&mut harness, 60, "the pause", |app| {
        app.train.state == Some(prioritycut_engine::worker::TrainingState::Paused)
    });
    harness.get_by_label("⏹ Stop").click();
    step_until(&mut harness, 60, "the stop", |app| !app.train.running());
    assert!(dir.join("run/losses.csv").is_file());
    // A run started from the window is as complete as one from the CLI: its snapshot sheets too.
    let sheets = std::fs::read_dir(dir.join("run/snapshots")).map_or(0, |d| d.count());
    assert!(sheets > 0, "the run folder has no snapshots/");
}

#[test]
fn the_photo_follows_a_video_standing_in_for_the_camera() {
    let dir = temp_dir("gui-live");
    let frames = read_video(&assets().join("sample/driving.gif")).expect("clip").0;
    let video = dir.join("camera.mp4");
    prioritycut_engine::data::write_frames(&video, &frames, 25.0, |_| {}).expect("mp4");
    let mut harness = app(options(Workspace::Live));
    step_until(&mut harness, 180, "the model and photo", |app| {
        app.animate.model.is_some() && app.animate.source_loaded()
    });
    {
        let live = &mut harness.state_mut().live.settings;
        live.use_file = true;
        live.file = video.display().to_string();
        live.stream_address = "127.0.0.1:0".into();
    }
    harness.step();
    assert!(harness.query_by_label("follow the face").is_some());
    harness.get_by_label("stream to other apps (MJPEG) at").click();
    step_until(&mut harness, 20, "the stream", |app| app.live.stream_url.is_some());
    let url = harness.state().live.stream_url.clone().unwrap_or_default();
    assert!(harness.query_by_label(&url).is_some(), "the address is shown");
    harness.get_by_label("▶ Start").click();
    step_until(&mut harness, 120, "live frames", |app| app.live.frames >= 5);
    assert!(harness.query_by_label_contains("fps").is_some());
    // An HTTP client gets the puppet's frames while the window shows them.
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let reader = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        write!(stream, "GET / HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("request");
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        // Two JPEG starts: one whole frame has come.
        while seen.windows(3).filter(|w| *w == [0xFF, 0xD8, 0xFF]).count() < 2 {
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the stream ended");
            seen.extend_from_slice(&chunk[..n]);
        }
        seen
    });
    step_until(&mut harness, 60, "an MJPEG client's frames", |_| reader.is_finished());
    let seen = reader.join().expect("the client");
    assert!(String::from_utf8_lossy(&seen).contains("multipart/x-mixed-replace"));
    harness.get_by_label("🎯 Calibrate").click();
    harness.get_by_label("⏹ Stop").click();
    step_until(&mut harness, 60, "the stop", |app| !app.live.running);
    assert!(harness.state().live.error.is_none(), "{:?}", harness.state().live.error);
    harness.get_by_label("stream to other apps (MJPEG) at").click();
    step_until(&mut harness, 20, "the stream off", |app| app.live.stream_url.is_none());
}

#[test]
fn the_window_starts_without_a_model_and_says_what_is_missing() {
    let mut options = options(Workspace::Live);
    let empty = temp_dir("gui-no-assets");
    options.assets = empty.to_path_buf();
    let mut harness = app(options);
    harness.run_steps(5);
    assert!(harness.query_by_label_contains("Load a model and a photo").is_some());
    harness.get_by_label("🎬 Animate").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("not animated yet").is_some());
}

#[test]
fn evaluation_shows_the_table_and_the_worst_reconstructions() {
    let dir = temp_dir("gui-eval");
    let data = figures(&dir, 1, 2, 6, 12);
    let mut harness = app(options(Workspace::Evaluate));
    harness.run_steps(2);
    // The bundled model is filled in on first start.
    assert!(harness.state().evaluate.settings.checkpoint.ends_with("model.bpk"));
    assert!(harness.query_by_label_contains("No evaluation yet").is_some());
    harness.state_mut().evaluate.settings.dataset = data.display().to_string();
    harness.step();
    harness.get_by_label("▶ Evaluate").click();
    step_until(&mut harness, 120, "the evaluation", |app| {
        !app.evaluate.rows.is_empty() || app.evaluate.error.is_some()
    });
    assert!(
        harness.state().evaluate.error.is_none(),
        "{:?}",
        harness.state().evaluate.error
    );
    assert!(harness.query_by_label("model.bpk").is_some(), "the table row");
    assert!(harness.query_by_label("AKD").is_some());
    assert!(harness.query_by_label("SSIM rest").is_some());
    assert!(harness.query_by_label_contains("joint detector").is_some());
    assert!(harness.query_by_label("Worst reconstructions").is_some());
    assert_eq!(
        harness.query_all_by_label("difference").count(),
        2,
        "one heatmap per video"
    );

    // A folder without test videos: its error is shown, the table stays.
    harness.state_mut().evaluate.settings.dataset = dir.join("nothing").display().to_string();
    harness.step();
    harness.get_by_label("▶ Evaluate").click();
    step_until(&mut harness, 60, "the error", |app| app.evaluate.error.is_some());
    let error = harness.state().evaluate.error.clone().unwrap_or_default();
    assert!(error.contains("nothing"), "{error}");
    assert_eq!(harness.state().evaluate.rows.len(), 1);
}

/// The window trains a TPSMM model's AVD network: ticking "AVD network only" asks for the
/// trained model, and the run trains `rec_kp` from it.
#[test]
fn training_the_avd_network_from_the_window() {
    let dir = temp_dir("gui-train-avd");
    let data = figures(&dir, 4, 1, 8, 5);
    // tpsmm-small's config with an AVD batch these four videos fill.
    let small = std::fs::read_to_string(fixture("tpsmm-small/config.yaml")).expect("config");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("{small}\ntrain_avd_params:\n  batch_size: 2\n  num_repeats: 1\n"),
    )
    .expect("write config");
    let mut harness = app(options(Workspace::Train));
    {
        let train = &mut harness.state_mut().train.settings;
        train.dataset = data.display().to_string();
        train.config = config.display().to_string();
        train.run = dir.join("run").display().to_string();
        train.steps = 3;
    }
    harness.step();
    assert!(harness.query_by_label("Trained model").is_none());
    harness.get_by_label("AVD network only").click();
    harness.run_steps(2);
    assert!(
        harness.query_by_label("Trained model").is_some(),
        "the trained model is asked for"
    );
    harness.state_mut().train.settings.trained_model = fixture("tpsmm-small/checkpoint.pth.tar").display().to_string();
    harness.step();
    harness.get_by_label("▶ Start").click();
    step_until(&mut harness, 120, "the run's end", |app| {
        app.train.step >= 3 && !app.train.running() || app.train.error.is_some()
    });
    assert!(
        harness.state().train.error.is_none(),
        "{:?}",
        harness.state().train.error
    );
    let losses = std::fs::read_to_string(dir.join("run/losses.csv")).expect("losses.csv");
    assert!(losses.lines().next().is_some_and(|h| h.contains("rec_kp")), "{losses}");
    assert_eq!(losses.lines().count(), 4, "{losses}");
}

/// The top bar's Device menu lists this machine's devices; choosing one moves the loaded model
/// there (it loads again, the log says where it computes now) and animating goes on. With an
/// adapter (CI's llvmpipe) the model goes to wgpu and back to flex; without one, to auto (flex).
#[test]
fn the_device_menu_moves_the_model_to_another_device() {
    let mut harness = app(options(Workspace::Animate));
    step_until(&mut harness, 180, "the bundled animation", |app| {
        app.animate.has_result()
    });
    let adapter = std::env::var_os("PRIORITYCUT_REQUIRE_WGPU").is_some();
    // The window started on flex: choosing it again changes nothing, so the way back is auto.
    let devices = if adapter {
        vec![
            ("wgpu:0: ", "now computing on wgpu"),
            ("CPU: flex (pure Rust)", "now computing on flex"),
        ]
    } else {
        vec![("auto: a GPU if there is one", "now computing on flex")]
    };
    for (entry, said) in devices {
        harness.get_by_label("Device").click();
        harness.run_steps(2);
        assert!(
            harness.query_by_label_contains("auto: a GPU if there is one").is_some(),
            "the menu offers the automatic choice"
        );
        harness.state_mut().animate.status = None;
        harness.state_mut().log.clear();
        harness.get_by_label_contains(entry).click();
        step_until(&mut harness, 120, "the switch and the model loaded again", |app| {
            app.log.iter().any(|line| line.starts_with(said))
                && app.animate.status.as_deref().is_some_and(|s| s.starts_with("model: "))
        });
        assert!(
            harness.query_by_label_contains("inputs changed").is_none(),
            "the same model on another device leaves the last animation standing"
        );
        harness.state_mut().animate.status = None;
        harness.get_by_label("▶ Animate").click();
        step_until(&mut harness, 180, "an animation on the new device", |app| {
            app.animate
                .status
                .as_deref()
                .is_some_and(|s| s.starts_with("animated "))
        });
        assert!(
            !harness.state().log.iter().any(|line| line.starts_with("error")),
            "{:#?}",
            harness.state().log
        );
    }
}
