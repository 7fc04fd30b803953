//! The `prioritycut` binary end to end.

mod common;

use std::io::Write;
use std::path::Path;

use common::{fixture, path, prioritycut, rewrite_torch_zip, temp_dir, text};

#[test]
fn verify_reference_passes_on_every_fixture_and_names_the_backend() {
    for dir in common::REFERENCE_DIRS {
        let out = prioritycut(&["verify-reference", path(&fixture(dir)), "--backend", "cpu"]);
        let all = text(&out);
        assert!(out.status.success(), "{dir}: {all}");
        assert!(all.contains("backend: flex"), "{all}");
        assert!(all.contains("PASS: 21 outputs"), "{all}");
        assert!(all.contains("animate_prediction"), "{all}");
    }
}

/// Copies the fixture folder with one float of the checkpoint changed.
fn fixture_with_one_weight_changed(dir: &Path) {
    let source = fixture("fomm-small");
    for entry in std::fs::read_dir(&source).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    rewrite_torch_zip(
        &source.join("checkpoint.pth.tar"),
        &dir.join("checkpoint.pth.tar"),
        |name, data| {
            // Storage 0 is the first tensor pickled: the keypoint detector's first conv weight.
            if name.ends_with("/data/0") {
                let value = f32::from_le_bytes([data[0], data[1], data[2], data[3]]) + 0.5;
                data[..4].copy_from_slice(&value.to_le_bytes());
            }
        },
    );
}

#[test]
fn verify_reference_fails_when_one_weight_is_changed() {
    let dir = temp_dir("one-weight");
    fixture_with_one_weight_changed(&dir);
    let out = prioritycut(&["verify-reference", path(&dir), "--backend", "flex"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("FAIL"), "{all}");
}

#[test]
fn animate_writes_gif_and_png_frames() {
    let dir = temp_dir("animate");
    let frames = dir.join("driving");
    std::fs::create_dir_all(&frames).expect("dir");
    for i in 0..3u32 {
        image::RgbImage::from_fn(80, 80, |x, y| {
            image::Rgb([((x + 9 * i) % 255) as u8, (y * 3) as u8, 128])
        })
        .save(frames.join(format!("{i:03}.png")))
        .expect("frame");
    }
    let source = dir.join("source.png");
    image::RgbImage::from_fn(120, 100, |x, y| image::Rgb([x as u8, y as u8, 60]))
        .save(&source)
        .expect("source");
    let small = fixture("fomm-small");
    let checkpoint = small.join("checkpoint.pth.tar");
    let config = small.join("config.yaml");
    for (out, extra) in [
        (dir.join("out.gif"), "--best-frame"),
        (dir.join("pngs"), "--adapt-scale"),
    ] {
        let run = prioritycut(&[
            "animate",
            "--checkpoint",
            path(&checkpoint),
            "--config",
            path(&config),
            "--source",
            path(&source),
            "--driving",
            path(&frames),
            "--out",
            path(&out),
            "--backend",
            "flex",
            extra,
        ]);
        assert!(run.status.success(), "{}", text(&run));
        assert!(text(&run).contains("wrote 3 frames (64x64)"), "{}", text(&run));
    }
    let gif = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(dir.join("out.gif")).expect("gif"),
    ))
    .expect("decodable gif");
    use image::AnimationDecoder;
    let decoded = gif.into_frames().collect_frames().expect("frames");
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0].buffer().dimensions(), (64, 64));
    let png = image::open(dir.join("pngs/frame_00002.png")).expect("png frame");
    assert_eq!((png.width(), png.height()), (64, 64));
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let dir = temp_dir("bad-inputs");
    let small = fixture("fomm-small");
    let source = dir.join("source.png");
    image::RgbImage::new(64, 64).save(&source).expect("source");
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnope").expect("write");
    let truncated = dir.join("cut.pth.tar");
    let bytes = std::fs::read(small.join("checkpoint.pth.tar")).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let mut wrong_config = std::fs::read_to_string(small.join("config.yaml")).expect("config");
    wrong_config = wrong_config.replace("num_kp: 10", "num_kp: 12");
    let wrong = dir.join("wrong.yaml");
    std::fs::File::create(&wrong)
        .and_then(|mut f| f.write_all(wrong_config.as_bytes()))
        .expect("write");

    let cases: [(&Path, &Path, &Path, &str); 3] = [
        (&truncated, &small.join("config.yaml"), &source, "cut.pth.tar"),
        (
            &small.join("checkpoint.pth.tar"),
            &wrong,
            &source,
            "kp_detector.kp.weight",
        ),
        (
            &small.join("checkpoint.pth.tar"),
            &small.join("config.yaml"),
            &broken,
            "not a readable image",
        ),
    ];
    for (checkpoint, config, src, expected) in cases {
        let run = prioritycut(&[
            "animate",
            "--checkpoint",
            path(checkpoint),
            "--config",
            path(config),
            "--source",
            path(src),
            "--driving",
            path(src),
            "--out",
            path(&dir.join("o.gif")),
            "--backend",
            "flex",
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{stderr}");
        assert!(error_lines[0].contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bench_animate_prints_a_figure_with_backend_and_size() {
    let config = fixture("fomm-small/config.yaml");
    let out = prioritycut(&[
        "bench",
        "animate",
        "--config",
        path(&config),
        "--backend",
        "flex",
        "--runs",
        "2",
        "--warmup",
        "1",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let line = all
        .lines()
        .find(|l| l.starts_with("bench animate"))
        .expect("result line");
    assert!(line.contains("64x64") && line.contains("backend flex"), "{line}");
    let ms: f64 = line
        .split(" ms/frame")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("a number of ms");
    assert!(ms > 0.0 && ms.is_finite(), "{line}");
}

#[test]
fn eval_prints_the_table_row_and_writes_it() {
    let dir = temp_dir("cli-eval");
    let data = dir.join("figures");
    let made = prioritycut(&[
        "make-dataset",
        "--synthetic",
        path(&data),
        "--train-videos",
        "1",
        "--test-videos",
        "2",
        "--frames",
        "4",
    ]);
    assert!(made.status.success(), "{}", text(&made));
    let out = dir.join("eval");
    let run = prioritycut(&[
        "eval",
        "--checkpoint",
        path(&fixture("fomm-small/checkpoint.pth.tar")),
        "--config",
        path(&fixture("fomm-small/config.yaml")),
        "--dataset",
        path(&data),
        "--name",
        "fixture",
        "--out",
        path(&out),
        "--backend",
        "flex",
    ]);
    let all = text(&run);
    assert!(run.status.success(), "{all}");
    assert!(all.contains("| Model | L1 ↓ | PSNR ↑"), "{all}");
    assert!(all.contains("| fixture | 0."), "{all}");
    assert!(all.contains("2 test videos, 8 frames (8 with a salient mask)"), "{all}");
    // A synthetic dataset brings the figures' joint detector: AKD/MKR/AED are measured.
    assert!(
        all.contains("AKD/MKR by the synthetic figures' colour joint detector"),
        "{all}"
    );
    assert!(all.contains("AED by"), "{all}");
    let csv = std::fs::read_to_string(out.join("table.csv")).expect("table.csv");
    assert_eq!(csv.lines().count(), 2);
    // Both test videos' worst frames: a row each of real, reconstruction and difference.
    let worst = image::open(out.join("worst.png")).expect("worst.png").to_rgb8();
    assert_eq!(worst.dimensions(), (3 * (192 + 4) + 4, 2 * (192 + 12 + 4) + 4 + 12));
    assert_eq!(
        std::fs::read_to_string(out.join("frames.csv"))
            .expect("frames")
            .lines()
            .count(),
        9
    );

    let missing = prioritycut(&[
        "eval",
        "--checkpoint",
        path(&fixture("fomm-small/checkpoint.pth.tar")),
        "--config",
        path(&fixture("fomm-small/config.yaml")),
        "--dataset",
        path(&dir.join("nothing-here")),
    ]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("nothing-here"), "{}", text(&missing));
}
