//! Parity with the official FOMM implementation: every output of the reference fixtures,
//! reproduced through the importer of official checkpoints, within 1e-4 (float32).

mod common;

use common::{REFERENCE_DIRS, cpu, fixture, temp_dir, wgpu_device};
use prioritycut_engine::checkpoint::FommModels;
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::reference::{ReferenceReport, verify_reference, verify_with_models};

/// Every output the fixture README lists.
const OUTPUTS: [&str; 21] = [
    "kp_source_value",
    "kp_source_jacobian",
    "kp_source_heatmap",
    "kp_driving_value",
    "kp_driving_jacobian",
    "kp_driving_initial_value",
    "kp_driving_initial_jacobian",
    "mask",
    "sparse_deformed",
    "deformation",
    "occlusion_map",
    "deformed",
    "prediction",
    "disc_feature_map_0",
    "disc_feature_map_1",
    "disc_feature_map_2",
    "disc_feature_map_3",
    "disc_prediction_map",
    "kp_norm_value",
    "kp_norm_jacobian",
    "animate_prediction",
];

fn assert_all_within_tolerance(report: &ReferenceReport) {
    for name in OUTPUTS {
        assert!(
            report.comparisons.iter().any(|c| c.name == name),
            "{}: {name} was not compared",
            report.dir.display()
        );
    }
    for c in &report.comparisons {
        eprintln!(
            "{:>40} {:<24} {:.2e}",
            report.dir.display().to_string().rsplit('/').next().unwrap_or(""),
            c.name,
            c.max_abs_error
        );
        assert!(
            c.max_abs_error <= 1e-4,
            "{}: {} differs from the official output by {:e}",
            report.dir.display(),
            c.name,
            c.max_abs_error
        );
    }
}

#[test]
fn every_reference_output_matches_on_the_cpu() {
    for dir in REFERENCE_DIRS {
        let report = verify_reference(&fixture(dir), &cpu()).expect("fixture loads and runs");
        assert_all_within_tolerance(&report);
    }
}

#[test]
fn every_reference_output_matches_on_wgpu() {
    let Some(device) = wgpu_device() else { return };
    let report = verify_reference(&fixture("fomm-small"), &device).expect("fixture runs on wgpu");
    assert_all_within_tolerance(&report);
}

#[test]
fn legacy_torch_format_loads_the_same_weights() {
    let dir = fixture("fomm-small");
    let config = FommConfig::from_yaml_file(dir.join("config.yaml")).expect("config");
    let (models, report) =
        FommModels::import(&fixture("fomm-small-legacy.pth.tar"), &config, &cpu()).expect("legacy checkpoint loads");
    assert!(report.discriminator);
    assert_all_within_tolerance(&verify_with_models(&dir, &models, &config, &cpu()).expect("runs"));
}

#[test]
fn own_checkpoint_format_round_trips() {
    let dir = fixture("fomm-small");
    let config = FommConfig::from_yaml_file(dir.join("config.yaml")).expect("config");
    let (models, _) = FommModels::import(&dir.join("checkpoint.pth.tar"), &config, &cpu()).expect("import");
    let out_dir = temp_dir("bpk");
    let out = out_dir.join("models.bpk");
    models.save(&out).expect("save");
    models.save(&out).expect("overwrite");
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("models.bpk")],
        "the temporary file is renamed away"
    );
    let reloaded = FommModels::load(&out, &config, &cpu()).expect("reload");
    assert_all_within_tolerance(&verify_with_models(&dir, &reloaded, &config, &cpu()).expect("runs"));
}

#[test]
fn bundled_vox256_config_is_the_built_in_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/configs/vox-256.yaml");
    let from_file = FommConfig::from_yaml_file(&path).expect("bundled config parses");
    assert_eq!(format!("{from_file:?}"), format!("{:?}", FommConfig::vox256()));
}

/// The kernels crate's GPU convolution (unfold + burn's matmul) against burn's convolution on
/// flex, on the geometries the networks use and a few they do not (batch, stride, dilation,
/// uneven padding), and its refusal of what it has no backward for (autodiff) and of a matmul of
/// too few rows (burn's direct kernel serves FOMM's 3-channel output better).
#[test]
fn gpu_convolution_matches_burns_on_every_geometry() {
    use prioritycut_engine::burn::tensor::module::conv2d;
    use prioritycut_engine::burn::tensor::ops::ConvOptions;
    use prioritycut_engine::burn::tensor::{Device, Distribution, Tensor};

    let Some(device) = wgpu_device() else { return };
    // (batch, in, out, height, width, kernel, stride, padding (top, bottom) (left, right), dilation)
    let cases = [
        (1, 3, 8, 17, 13, 3, 1, ((1, 1), (1, 1)), 1),
        (2, 5, 8, 16, 16, 7, 1, ((3, 3), (3, 3)), 1),
        (1, 6, 11, 9, 12, 7, 1, ((3, 3), (3, 3)), 1),
        (3, 4, 10, 15, 11, 3, 2, ((0, 1), (1, 0)), 1),
        (1, 2, 8, 14, 14, 3, 1, ((2, 2), (2, 2)), 2),
        (1, 8, 9, 8, 8, 1, 1, ((0, 0), (0, 0)), 1),
    ];
    let flex = Device::flex();
    for (batch, input, output, height, width, kernel, stride, (rows, columns), dilation) in cases {
        let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &flex);
        let x = random([batch, input, height, width]);
        let weight = random([output, input, kernel, kernel]);
        let bias = Tensor::<1>::random([output], Distribution::Uniform(-1.0, 1.0), &flex);
        let options = ConvOptions::new_with_padding([stride; 2], [rows, columns], [dilation; 2], 1);
        let expected = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone());

        let on_gpu = |t: &Tensor<4>| t.clone().to_device(&device);
        let ours = prioritycut_engine::kernels::gpu::conv2d(
            &on_gpu(&x),
            &on_gpu(&weight),
            Some(&bias.to_device(&device)),
            &options,
        )
        .unwrap_or_else(|| panic!("the GPU convolution takes {input}→{output} {kernel}×{kernel} on wgpu"));
        assert_eq!(ours.dims(), expected.dims(), "{kernel}×{kernel} stride {stride}");
        let ours = ours.to_device(&flex);
        let difference: f32 = (ours - expected.clone()).abs().max().into_scalar();
        let scale = expected.abs().max().into_scalar::<f32>().max(1.0);
        assert!(
            difference <= 1e-5 * scale * (input * kernel * kernel) as f32,
            "{input}→{output} {kernel}×{kernel} stride {stride} dilation {dilation}: {difference} of {scale}"
        );

        let tracked = on_gpu(&x).autodiff().require_grad();
        let tracked_weight = on_gpu(&weight).autodiff();
        assert!(
            prioritycut_engine::kernels::gpu::conv2d(&tracked, &tracked_weight, None, &options).is_none(),
            "autodiff tensors keep burn's convolution (no backward written yet)"
        );
    }
    // Unfolded in chunks of input channels, their products summed: 10 channels of 3×3 taps over
    // 10×10 pixels in chunks of 4 channels' bytes (4, 4 and 2 channels).
    let x = Tensor::<4>::random([1, 10, 10, 10], Distribution::Uniform(-1.0, 1.0), &flex);
    let weight = Tensor::<4>::random([8, 10, 3, 3], Distribution::Uniform(-1.0, 1.0), &flex);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let expected = conv2d(x.clone(), weight.clone(), None, options.clone());
    let chunked = prioritycut_engine::kernels::gpu::conv2d_unfolding_at_most(
        4 * 9 * 100 * 4,
        &x.to_device(&device),
        &weight.to_device(&device),
        None,
        &options,
    )
    .expect("the GPU convolution takes 10→8 3×3");
    let difference: f32 = (chunked.to_device(&flex) - expected).abs().max().into_scalar();
    assert!(difference <= 1e-4, "in chunks: {difference}");

    let x = Tensor::<4>::zeros([1, 64, 16, 16], &device);
    let three_outputs = Tensor::<4>::zeros([3, 64, 7, 7], &device);
    let options = ConvOptions::new([1, 1], [3, 3], [1, 1], 1);
    assert!(prioritycut_engine::kernels::gpu::conv2d(&x, &three_outputs, None, &options).is_none());
}
