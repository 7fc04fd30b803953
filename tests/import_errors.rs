//! Bad checkpoints give one clear line naming the problem, never a panic.

mod common;

use std::path::Path;

use common::{cpu, fixture, rewrite_torch_zip, temp_dir};
use prioritycut_engine::checkpoint::FommModels;
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::config::tpsmm::TpsmmConfigFile;
use prioritycut_engine::import::load_tpsmm_checkpoint;
use prioritycut_engine::model::tpsmm::{TpsmmConfig, TpsmmModels};

fn small_config() -> FommConfig {
    FommConfig::from_yaml_file(fixture("fomm-small/config.yaml")).expect("config")
}

fn import_error(checkpoint: &Path, config: &FommConfig) -> String {
    let error = FommModels::import(checkpoint, config, &cpu()).expect_err("must be refused");
    let message = error.to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

#[test]
fn wrong_shape_names_the_key_and_both_shapes() {
    let mut config = small_config();
    config.kp_detector.num_kp = 7;
    let message = import_error(&fixture("fomm-small/checkpoint.pth.tar"), &config);
    assert!(message.contains("kp_detector.kp.weight"), "{message}");
    assert!(
        message.contains("[10, 11, 7, 7]") && message.contains("[7, 11, 7, 7]"),
        "{message}"
    );
}

#[test]
fn missing_and_unexpected_keys_are_named() {
    let mut config = small_config();
    config.generator.num_bottleneck_blocks = 3;
    let message = import_error(&fixture("fomm-small/checkpoint.pth.tar"), &config);
    assert!(
        message.contains("generator.bottleneck.r2.") && message.contains("missing"),
        "{message}"
    );

    let mut config = small_config();
    config.generator.num_bottleneck_blocks = 1;
    let message = import_error(&fixture("fomm-small/checkpoint.pth.tar"), &config);
    assert!(
        message.contains("generator.bottleneck.r1") && message.contains("no place"),
        "{message}"
    );

    let mut config = small_config();
    config.discriminator.scales = vec![1.0, 0.5];
    let message = import_error(&fixture("fomm-small/checkpoint.pth.tar"), &config);
    assert!(message.contains("scale 0.5"), "{message}");
}

#[test]
fn truncated_file_is_refused() {
    let bytes = std::fs::read(fixture("fomm-small/checkpoint.pth.tar")).expect("read");
    let dir = temp_dir("truncated");
    for (name, len) in [
        ("half.pth.tar", bytes.len() / 2),
        ("tail-cut.pth.tar", bytes.len() - 100),
        ("empty.pth.tar", 0),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes[..len]).expect("write");
        let message = import_error(&path, &small_config());
        assert!(message.contains(name), "{message}");
    }
    let legacy = std::fs::read(fixture("fomm-small-legacy.pth.tar")).expect("read");
    let path = dir.join("legacy-cut.pth.tar");
    std::fs::write(&path, &legacy[..legacy.len() / 3]).expect("write");
    import_error(&path, &small_config());
}

#[test]
fn files_that_are_not_fomm_checkpoints_are_refused() {
    let dir = temp_dir("wrong-type");
    let text = dir.join("notes.pth.tar");
    std::fs::write(&text, "this is not a checkpoint").expect("write");
    assert!(import_error(&text, &small_config()).contains("not a readable PyTorch checkpoint"));

    let image = dir.join("image.pth.tar");
    std::fs::copy(fixture("fomm-small/source.npy"), &image).expect("copy");
    import_error(&image, &small_config());

    let missing = dir.join("does-not-exist.pth.tar");
    assert!(import_error(&missing, &small_config()).contains("does-not-exist.pth.tar"));

    // A valid torch zip that holds something else: the entries of our fixture under other names.
    let other = dir.join("other.pth.tar");
    rename_top_level(
        &fixture("fomm-small/checkpoint.pth.tar"),
        &other,
        b"kp_detector",
        b"kp_detectoX",
    );
    assert!(import_error(&other, &small_config()).contains("no 'kp_detector'"));
}

/// Copies a torch zip checkpoint, replacing one byte string (same length) in its pickle.
fn rename_top_level(from: &Path, to: &Path, old: &[u8], new: &[u8]) {
    rewrite_torch_zip(from, to, |name, data| {
        if name.ends_with("data.pkl") {
            let at = data.windows(old.len()).position(|w| w == old).expect("key in pickle");
            data[at..at + new.len()].copy_from_slice(new);
        }
    });
}

#[test]
fn truncated_own_checkpoint_is_refused() {
    let (models, _) =
        FommModels::import(&fixture("fomm-small/checkpoint.pth.tar"), &small_config(), &cpu()).expect("import");
    let dir = temp_dir("bpk-cut");
    let whole = dir.join("whole.bpk");
    models.save(&whole).expect("save");
    let bytes = std::fs::read(&whole).expect("read");
    let cut = dir.join("cut.bpk");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let message = FommModels::load(&cut, &small_config(), &cpu())
        .expect_err("truncated")
        .to_string();
    assert!(message.contains("cut.bpk") && !message.contains('\n'), "{message}");
    let mut other = small_config();
    other.kp_detector.num_kp = 4;
    let message = FommModels::load(&whole, &other, &cpu())
        .expect_err("wrong config")
        .to_string();
    assert!(message.contains("does the config match"), "{message}");
}

fn tpsmm_config() -> TpsmmConfig {
    TpsmmConfigFile::read(&fixture("tpsmm-small/config.yaml"))
        .expect("config")
        .config
}

fn tpsmm_import_error(checkpoint: &Path, config: &TpsmmConfig) -> String {
    let mut models = TpsmmModels::new(config, &cpu());
    let error = load_tpsmm_checkpoint(checkpoint, &mut models).expect_err("must be refused");
    let message = error.to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

#[test]
fn tpsmm_checkpoints_that_do_not_fit_are_refused_by_name() {
    let checkpoint = fixture("tpsmm-small/checkpoint.pth.tar");
    let mut config = tpsmm_config();
    config.num_tps = 7;
    let message = tpsmm_import_error(&checkpoint, &config);
    assert!(message.contains("kp_detector.fg_encoder.fc.weight"), "{message}");

    let mut config = tpsmm_config();
    config.resnet_width = 64;
    let message = tpsmm_import_error(&checkpoint, &config);
    assert!(message.contains("kp_detector.fg_encoder.conv1.weight"), "{message}");

    // A FOMM checkpoint is not a TPSMM one.
    let message = tpsmm_import_error(&fixture("fomm-small/checkpoint.pth.tar"), &tpsmm_config());
    assert!(message.contains("is this a TPSMM checkpoint"), "{message}");

    let bytes = std::fs::read(&checkpoint).expect("read");
    let folder = temp_dir("tpsmm-truncated");
    let truncated = folder.join("half.pth.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    tpsmm_import_error(&truncated, &tpsmm_config());
}

#[test]
fn tpsmm_optional_networks_are_dropped_where_the_checkpoint_has_none() {
    let dir = temp_dir("tpsmm-optional");
    let without = dir.join("without.pth.tar");
    rewrite_torch_zip(&fixture("tpsmm-small/checkpoint.pth.tar"), &without, |name, data| {
        if name.ends_with("data.pkl") {
            for (old, new) in [
                (&b"avd_network"[..], &b"avd_networX"[..]),
                (b"bg_predictor", b"bg_predictoX"),
            ] {
                let at = data.windows(old.len()).position(|w| w == old).expect("key in pickle");
                data[at..at + new.len()].copy_from_slice(new);
            }
        }
    });
    let mut models = TpsmmModels::new(&tpsmm_config(), &cpu());
    let report = load_tpsmm_checkpoint(&without, &mut models).expect("the demo's three networks suffice");
    assert!(!report.bg_predictor && !report.avd_network);
    assert!(models.bg_predictor.is_none() && models.avd_network.is_none());

    let mut models = TpsmmModels::new(&tpsmm_config(), &cpu());
    let report = load_tpsmm_checkpoint(&fixture("tpsmm-small/checkpoint.pth.tar"), &mut models).expect("loads");
    assert!(report.bg_predictor && report.avd_network);
    assert!(models.bg_predictor.is_some() && models.avd_network.is_some());
}
