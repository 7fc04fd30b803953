//! Parity with the official FOMM implementation: every output of the reference fixtures,
//! reproduced through the importer of official checkpoints, within 1e-4 (float32).

mod common;

use common::{REFERENCE_DIRS, cpu, fixture, temp_dir, wgpu_device};
use prioritycut_engine::burn::tensor::Device;
use prioritycut_engine::checkpoint::FommModels;
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::kernels::test_support::largest_difference;
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
    use prioritycut_engine::kernels::gpu::{self, KernelChoice};

    let Some(device) = wgpu_device() else { return };
    // burn's kernels (what a software adapter runs by default), then ours forced on: the
    // network-level check of the kernels crate's GPU convolutions. No other test of this binary
    // depends on the choice.
    for choice in [KernelChoice::Burn, KernelChoice::Ours] {
        gpu::choose(choice);
        let report = verify_reference(&fixture("fomm-small"), &device).expect("fixture runs on wgpu");
        if let Some(worst) = report.worst() {
            eprintln!(
                "{choice:?} kernels on wgpu: worst {} {:e}",
                worst.name, worst.max_abs_error
            );
        }
        assert_all_within_tolerance(&report);
        if choice == KernelChoice::Ours {
            dense_motion_inputs_match_on_wgpu(&device);
            keypoints_match_on_wgpu(&device);
        }
    }
    gpu::choose(KernelChoice::Auto);
}

/// The dense motion network on the GPU (its sparse motions, heatmaps and warped sources made by
/// the kernels crate's two motion kernels) against the same network on the CPU, with and without
/// Jacobians, keypoints reaching past the image so that sampling meets the zero padding. Called
/// with our kernels chosen.
fn dense_motion_inputs_match_on_wgpu(gpu: &Device) {
    use prioritycut_engine::burn::module::Module;
    use prioritycut_engine::burn::tensor::{Distribution, Tensor};
    use prioritycut_engine::model::blocks::InferenceForm;
    use prioritycut_engine::model::dense_motion::DenseMotionConfig;
    use prioritycut_engine::model::keypoints::Keypoints;

    let cpu = cpu();
    cpu.seed(5);
    let network = DenseMotionConfig::new()
        .with_block_expansion(8)
        .with_max_features(32)
        .with_num_blocks(2)
        .with_num_kp(4)
        .init(&cpu);
    let on_gpu = network.clone().to_device(gpu);
    let source = Tensor::<4>::random([2, 3, 20, 24], Distribution::Uniform(0.0, 1.0), &cpu);
    let keypoints = |jacobians: bool| Keypoints {
        value: Tensor::random([2, 4, 2], Distribution::Uniform(-1.2, 1.2), &cpu),
        jacobian: jacobians.then(|| Tensor::random([2, 4, 2, 2], Distribution::Uniform(-1.0, 1.0), &cpu)),
    };
    let moved = |kp: &Keypoints| Keypoints {
        value: kp.value.clone().to_device(gpu),
        jacobian: kp.jacobian.clone().map(|j| j.to_device(gpu)),
    };
    for jacobians in [true, false] {
        let (driving, source_kp) = (keypoints(jacobians), keypoints(jacobians));
        let expected = network.forward_downsampled(source.clone(), &driving, &source_kp);
        // As trained, and in the inference form (the heads stacked, their outputs by one kernel).
        for (form, on_gpu) in [
            ("as trained", on_gpu.clone()),
            ("inference form", on_gpu.clone().into_inference_form()),
        ] {
            let ours = on_gpu.forward_downsampled(source.clone().to_device(gpu), &moved(&driving), &moved(&source_kp));
            let close = |what: &str, difference: f32, scale: f32| {
                eprintln!("dense motion on wgpu, {form}, Jacobians {jacobians}: {what} {difference:e} of {scale}");
                assert!(
                    difference <= 2e-5 * scale.max(1.0),
                    "{form}: {what}: {difference} of {scale}"
                );
            };
            let (d, s) = largest_difference(ours.sparse_deformed.to_device(&cpu), expected.sparse_deformed.clone());
            close("sparse_deformed", d, s);
            let (d, s) = largest_difference(ours.mask.to_device(&cpu), expected.mask.clone());
            close("mask", d, s);
            let (d, s) = largest_difference(ours.deformation.to_device(&cpu), expected.deformation.clone());
            close("deformation", d, s);
            let (ours, expected) = (
                ours.occlusion_map.expect("occlusion"),
                expected.occlusion_map.clone().expect("occlusion"),
            );
            let (d, s) = largest_difference(ours.to_device(&cpu), expected);
            close("occlusion_map", d, s);
        }
    }
}

/// The keypoint detector on the GPU (softmax, means and weighted Jacobians by the kernels crate's
/// heatmap statistics) against the CPU's: a Jacobian map per keypoint, one shared, none. Called
/// with our kernels chosen.
fn keypoints_match_on_wgpu(gpu: &Device) {
    use prioritycut_engine::burn::module::{Module, Param};
    use prioritycut_engine::burn::tensor::{Distribution, Tensor};
    use prioritycut_engine::model::blocks::InferenceForm;
    use prioritycut_engine::model::keypoint_detector::KpDetectorConfig;

    let cpu = cpu();
    cpu.seed(7);
    let image = Tensor::<4>::random([2, 3, 64, 48], Distribution::Uniform(0.0, 1.0), &cpu);
    for (estimate_jacobian, single_jacobian_map) in [(true, false), (true, true), (false, false)] {
        let detector = KpDetectorConfig::new()
            .with_block_expansion(8)
            .with_max_features(32)
            .with_num_blocks(2)
            .with_num_kp(5)
            .with_estimate_jacobian(estimate_jacobian)
            .with_single_jacobian_map(single_jacobian_map)
            .init(&cpu);
        let mut detector = detector;
        // FOMM starts the Jacobian head at the identity everywhere: weights that vary it.
        if let Some(head) = detector.jacobian.as_mut() {
            let dims = head.weight.dims();
            head.weight = Param::from_tensor(Tensor::random(dims, Distribution::Uniform(-0.05, 0.05), &cpu));
        }
        let expected = detector.forward(image.clone());
        let on_gpu = detector.to_device(gpu);
        // As trained, and in the inference form (the two heads stacked into one convolution).
        for (form, detector) in [
            ("as trained", on_gpu.clone()),
            ("inference form", on_gpu.into_inference_form()),
        ] {
            let ours = detector.forward(image.clone().to_device(gpu));
            let what =
                format!("keypoints on wgpu, {form}, Jacobians {estimate_jacobian}, one map {single_jacobian_map}");
            let (d, s) = largest_difference(ours.value.to_device(&cpu), expected.value.clone());
            eprintln!("{what}: values {d:e} of {s}");
            assert!(d <= 1e-5, "{what}: values {d} of {s}");
            assert_eq!(ours.jacobian.is_some(), estimate_jacobian, "{what}");
            if let (Some(ours), Some(expected)) = (ours.jacobian, expected.jacobian.clone()) {
                let (d, s) = largest_difference(ours.to_device(&cpu), expected);
                eprintln!("{what}: Jacobians {d:e} of {s}");
                assert!(d <= 1e-5 * s.max(1.0), "{what}: Jacobians {d} of {s}");
            }
        }
    }
}

/// Every output of the TPSMM fixture's README.
const TPSMM_OUTPUTS: [&str; 27] = [
    "kp_source",
    "kp_driving",
    "kp_driving_initial",
    "bg_param",
    "heatmap_representation",
    "transformations",
    "deformed_source",
    "contribution_maps",
    "deformation",
    "occlusion_map_0",
    "occlusion_map_1",
    "occlusion_map_2",
    "occlusion_map_3",
    "deformed",
    "prediction",
    "warped_encoder_map_0",
    "warped_encoder_map_1",
    "warped_encoder_map_2",
    "warped_encoder_map_3",
    "transformations_bg",
    "deformation_bg",
    "prediction_bg",
    "kp_norm_relative",
    "kp_norm_avd",
    "animate_standard",
    "animate_relative",
    "animate_avd",
];

/// The official TPSMM's outputs through the importer of its checkpoints: keypoints, background
/// motion, every intermediate of dense motion and inpainting, and the demo's three modes.
#[test]
fn every_tpsmm_reference_output_matches() {
    let mut devices = vec![cpu()];
    devices.extend(wgpu_device());
    for device in devices {
        let report = verify_reference(&fixture("tpsmm-small"), &device).expect("fixture loads and runs");
        let compared: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(compared.len(), TPSMM_OUTPUTS.len(), "{compared:?}");
        for name in TPSMM_OUTPUTS {
            assert!(compared.contains(&name), "{name} was not compared on {device:?}");
        }
        for c in &report.comparisons {
            eprintln!("tpsmm-small {device:?} {:<24} {:.2e}", c.name, c.max_abs_error);
            assert!(
                c.within(1e-4),
                "{} differs from the official output by {:e} on {device:?}",
                c.name,
                c.max_abs_error
            );
        }
    }
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

/// The kernels crate's GPU convolution (Winograd, the direct kernel for few outputs, unfold +
/// burn's matmul for the rest) against burn's convolution on flex, on the geometries the
/// networks use and a few they do not (batch, stride, dilation, uneven padding), and its
/// refusal of what its backward does not take under autodiff (stride, dilation).
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
        (2, 6, 72, 11, 10, 5, 2, ((2, 1), (2, 2)), 1),
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
        let (difference, scale) = largest_difference(ours, expected);
        let scale = scale.max(1.0);
        assert!(
            difference <= 1e-5 * scale * (input * kernel * kernel) as f32,
            "{input}→{output} {kernel}×{kernel} stride {stride} dilation {dilation}: {difference} of {scale}"
        );

        let tracked = on_gpu(&x).autodiff().require_grad();
        let tracked_weight = on_gpu(&weight).autodiff();
        let under_autodiff = prioritycut_engine::kernels::gpu::conv2d(&tracked, &tracked_weight, None, &options);
        assert_eq!(
            under_autodiff.is_some(),
            stride == 1 && dilation == 1,
            "under autodiff ours takes stride 1 without dilation (its backward's), burn's the rest"
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
}

/// The direct convolution of few outputs against burn's on flex (its launches are counted in
/// `gpu_blocks.rs`): the networks' heads reading an hourglass's output and skip in place of their concatenation
/// (outputs in blocks of four, the last partial), the generator's output with its sigmoid, the
/// anti-aliased downsampling's strided depthwise Gaussian; wider layers left to the matmul.
#[test]
fn gpu_direct_convolution_reads_concatenations_and_applies_the_sigmoid() {
    use prioritycut_engine::burn::tensor::activation::sigmoid;
    use prioritycut_engine::burn::tensor::module::conv2d;
    use prioritycut_engine::burn::tensor::ops::ConvOptions;
    use prioritycut_engine::burn::tensor::{Device, Distribution, Tensor};
    use prioritycut_engine::kernels::gpu::{Activation, DIRECT_MAX_OUTPUT_CHANNELS, conv2d_direct};

    let Some(device) = wgpu_device() else { return };
    let flex = Device::flex();
    let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &flex);
    // (batch, head channels, tail channels, out, height, width, kernel, stride, padding, groups,
    // bias, activation)
    let cases = [
        (1, 8, 3, 50, 16, 16, 7, 1, 3, 1, true, Activation::Identity),
        (2, 6, 5, 12, 9, 11, 7, 1, 3, 1, true, Activation::Identity),
        (1, 16, 0, 3, 20, 18, 7, 1, 3, 1, true, Activation::Sigmoid),
        (2, 3, 0, 3, 33, 30, 13, 4, 6, 3, false, Activation::Identity),
        (1, 4, 0, 8, 10, 10, 3, 2, 1, 2, true, Activation::Sigmoid),
    ];
    for (
        batch,
        head_channels,
        tail_channels,
        out,
        height,
        width,
        kernel,
        stride,
        padding,
        groups,
        with_bias,
        activation,
    ) in cases
    {
        let head = random([batch, head_channels, height, width]);
        let tail = random([batch, tail_channels, height, width]);
        let weight = random([out, (head_channels + tail_channels) / groups, kernel, kernel]);
        let bias = with_bias.then(|| Tensor::<1>::random([out], Distribution::Uniform(-1.0, 1.0), &flex));
        let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], groups);
        let input = Tensor::cat(vec![head.clone(), tail.clone()], 1);
        let mut expected = conv2d(input, weight.clone(), bias.clone(), options.clone());
        if activation == Activation::Sigmoid {
            expected = sigmoid(expected);
        }

        let on_gpu = |t: &Tensor<4>| t.clone().to_device(&device);
        let (head, tail, weight) = (on_gpu(&head), on_gpu(&tail), on_gpu(&weight));
        let bias = bias.map(|bias| bias.to_device(&device));
        let tail = (tail_channels > 0).then_some(&tail);
        let case = format!("{head_channels}+{tail_channels}→{out} {kernel}×{kernel} stride {stride} groups {groups}");
        let ours = conv2d_direct(&head, tail, &weight, bias.as_ref(), &options, activation)
            .unwrap_or_else(|| panic!("the direct kernel takes {case}"));
        assert_eq!(ours.dims(), expected.dims(), "{case}");
        let (difference, scale) = largest_difference(ours.to_device(&flex), expected);
        assert!(difference <= 1e-5 * scale.max(1.0), "{case}: {difference} of {scale}");
    }
    let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
    let wide = Tensor::<4>::zeros([DIRECT_MAX_OUTPUT_CHANNELS + 1, 4, 7, 7], &device);
    let options = ConvOptions::new([1, 1], [3, 3], [1, 1], 1);
    assert!(conv2d_direct(&x, None, &wide, None, &options, Activation::Identity).is_none());
    let tracked = x.autodiff().require_grad();
    let weight = Tensor::<4>::zeros([3, 4, 7, 7], &device).autodiff();
    assert!(conv2d_direct(&tracked, None, &weight, None, &options, Activation::Identity).is_none());
}

/// The GPU convolution under autodiff (training) against burn's convolution and its backward on
/// flex: output and the input, weight and bias gradients through a loss that weighs every output
/// differently. Winograd and unfold forwards, input gradients by ours and (fewer than 8 outputs)
/// by burn's kernel, uneven padding, a batch, weight gradients in chunks of input channels.
#[test]
fn gpu_convolution_gradients_match_burns() {
    use prioritycut_engine::burn::tensor::module::conv2d;
    use prioritycut_engine::burn::tensor::ops::ConvOptions;
    use prioritycut_engine::burn::tensor::{Device, Distribution, Tensor, TensorData};

    let Some(device) = wgpu_device() else { return };
    let flex = Device::flex();
    // (batch, in, out, height, width, kernel, padding (top, bottom) (left, right))
    let cases = [
        (1, 8, 16, 12, 10, 3, ((1, 1), (1, 1))),
        (2, 3, 8, 9, 11, 3, ((1, 1), (1, 1))),
        (1, 8, 8, 10, 9, 3, ((0, 2), (2, 1))),
        (1, 10, 12, 16, 16, 7, ((3, 3), (3, 3))),
        (2, 16, 3, 12, 12, 7, ((3, 3), (3, 3))),
    ];
    for (batch, input, output, height, width, kernel, (rows, columns)) in cases {
        let random =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &flex).into_data();
        let options = ConvOptions::new_with_padding([1, 1], [rows, columns], [1, 1], 1);
        let out_height = height + rows.0 + rows.1 + 1 - kernel;
        let out_width = width + columns.0 + columns.1 + 1 - kernel;
        let (x, weight) = (
            random([batch, input, height, width]),
            random([output, input, kernel, kernel]),
        );
        let weighting = random([batch, output, out_height, out_width]);
        let bias = TensorData::new((0..output).map(|i| i as f32 / 10.0).collect(), [output]);
        let run = |device: &Device, ours: bool| {
            let device = device.clone().autodiff();
            let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
            let weight = Tensor::<4>::from_data(weight.clone(), &device).require_grad();
            let bias = Tensor::<1>::from_data(bias.clone(), &device).require_grad();
            let y = if ours {
                prioritycut_engine::kernels::gpu::conv2d(&x, &weight, Some(&bias), &options)
                    .expect("ours takes a stride-1 convolution under autodiff")
            } else {
                conv2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone())
            };
            let grads = (y.clone() * Tensor::from_data(weighting.clone(), &device))
                .sum()
                .backward();
            let gradient = |t: Option<Tensor<4>>| t.expect("a gradient").to_device(&flex);
            (
                y.inner().to_device(&flex),
                gradient(x.grad(&grads)),
                gradient(weight.grad(&grads)),
                bias.grad(&grads).expect("a bias gradient").to_device(&flex),
            )
        };
        let (y, dx, dw, db) = run(&device, true);
        let (y_ref, dx_ref, dw_ref, db_ref) = run(&flex, false);
        let shape =
            format!("{batch}×{input}→{output} {kernel}×{kernel} at {height}×{width} padded {rows:?} {columns:?}");
        let check = |what: &str, ours: Tensor<4>, reference: Tensor<4>| {
            let (difference, scale) = largest_difference(ours, reference);
            let scale = scale.max(1.0);
            eprintln!("{what} {shape}: {difference:e} of {scale}");
            assert!(difference <= 1e-5 * scale, "{what} {shape}: {difference} of {scale}");
        };
        check("output", y, y_ref);
        check("input gradient", dx, dx_ref);
        check("weight gradient", dw.clone(), dw_ref.clone());
        check(
            "bias gradient",
            db.reshape([1, 1, 1, output]),
            db_ref.reshape([1, 1, 1, output]),
        );
        // The weight gradient unfolded in parts a small buffer holds: one image and one
        // channel at a time (a buffer below one channel of the batch: FOMM's 7×7 layers at
        // the fixture's batch of 40 needed 245 MiB, beyond llvmpipe's 128 MiB), and two
        // channels at a time.
        let dy = Tensor::<4>::from_data(weighting.clone(), &device);
        let x_gpu = Tensor::<4>::from_data(x.clone(), &device);
        let taps_bytes = kernel * kernel * out_height * out_width * 4;
        for budget in [taps_bytes, 2 * batch * taps_bytes] {
            let parts = prioritycut_engine::kernels::gpu::weight_gradient_unfolding_at_most(
                budget,
                x_gpu.clone(),
                &dy,
                [output, input, kernel, kernel],
                &options,
            );
            check(
                &format!("weight gradient within {budget} bytes"),
                parts.to_device(&flex),
                dw_ref.clone(),
            );
        }
    }
}

/// The GPU's Winograd F(4×4, 3×3) convolution against burn's convolution on flex: maps that are
/// not whole tiles, batches, uneven and absent padding, a strided (channels-last) input, and 64
/// input channels, where the transforms' rounding adds up most; and what it leaves to the unfold
/// convolution (stride 2, dilation).
#[test]
fn gpu_winograd_convolution_matches_burns() {
    use prioritycut_engine::burn::tensor::module::conv2d;
    use prioritycut_engine::burn::tensor::ops::ConvOptions;
    use prioritycut_engine::burn::tensor::{Device, Distribution, Tensor};
    use prioritycut_engine::kernels::gpu::conv2d_winograd;

    let Some(device) = wgpu_device() else { return };
    let flex = Device::flex();
    let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &flex);
    // (batch, in, out, height, width, padding (top, bottom) (left, right), channels-last input)
    let cases = [
        (1, 3, 8, 17, 13, ((1, 1), (1, 1)), false),
        (2, 20, 16, 16, 16, ((1, 1), (1, 1)), false),
        (1, 16, 24, 9, 7, ((0, 2), (2, 0)), false),
        (1, 8, 8, 3, 6, ((0, 0), (0, 0)), false),
        (3, 8, 8, 4, 4, ((1, 1), (1, 1)), true),
        (1, 64, 32, 32, 32, ((1, 1), (1, 1)), true),
    ];
    for (batch, input, output, height, width, (rows, columns), channels_last) in cases {
        let x = if channels_last {
            random([batch, height, width, input]).permute([0, 3, 1, 2])
        } else {
            random([batch, input, height, width])
        };
        let weight = random([output, input, 3, 3]);
        let bias = Tensor::<1>::random([output], Distribution::Uniform(-1.0, 1.0), &flex);
        let options = ConvOptions::new_with_padding([1, 1], [rows, columns], [1, 1], 1);
        let expected = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone());

        let on_gpu = |t: &Tensor<4>| t.clone().to_device(&device);
        let ours = conv2d_winograd(&on_gpu(&x), &on_gpu(&weight), Some(&bias.to_device(&device)), &options)
            .unwrap_or_else(|| panic!("Winograd takes {input}→{output} 3×3 on wgpu"));
        assert_eq!(ours.dims(), expected.dims(), "{input}→{output} on {height}×{width}");
        let (difference, scale) = largest_difference(ours.to_device(&flex), expected);
        let scale = scale.max(1.0);
        eprintln!("Winograd {input}→{output} on {height}×{width}: {difference:e} of {scale}");
        // Measured on llvmpipe: at most 6e-6 of the largest output (64 input channels).
        assert!(
            difference <= 1e-5 * scale,
            "{input}→{output} on {height}×{width} padded {rows:?} {columns:?}: {difference} of {scale}"
        );

        let tracked = on_gpu(&x).autodiff().require_grad();
        assert!(
            conv2d_winograd(&tracked, &on_gpu(&weight).autodiff(), None, &options).is_none(),
            "the Winograd operation itself takes plain tensors (autodiff goes through gpu::conv2d)"
        );
    }
    let x = Tensor::<4>::zeros([1, 8, 16, 16], &device);
    let weight = Tensor::<4>::zeros([8, 8, 3, 3], &device);
    for (stride, dilation) in [(2, 1), (1, 2)] {
        let options = ConvOptions::new([stride; 2], [1, 1], [dilation; 2], 1);
        assert!(
            conv2d_winograd(&x, &weight, None, &options).is_none(),
            "stride {stride} dilation {dilation} is not F(4×4, 3×3)'s"
        );
    }
}

/// TPSMM's gradient clipping (torch's `clip_grad_norm_`, infinity norm) finds the largest
/// gradient value wherever it sits in a 512×512×3×3 gradient, on the CPU and on wgpu, where a
/// reduction of the gradient flattened to one axis misses the values past its first ~262 000.
#[test]
fn the_largest_gradient_value_is_found_on_every_device() {
    use prioritycut_engine::burn::tensor::{Device, Tensor};
    use prioritycut_engine::train::optim::largest_magnitude;
    let shape = [512usize, 512, 3, 3];
    let n: usize = shape.iter().product();
    let devices: Vec<Device> = std::iter::once(Device::flex()).chain(wgpu_device()).collect();
    for device in &devices {
        for at in [0, n / 2, n - 1] {
            let mut values = vec![0.5f32; n];
            values[at] = -7.0;
            let gradient = Tensor::<1>::from_floats(values.as_slice(), device).reshape(shape);
            assert_eq!(largest_magnitude(gradient), 7.0, "value {at} of {n} on {device:?}");
        }
    }
}
