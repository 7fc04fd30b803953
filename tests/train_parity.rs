//! Parity of one training step with the official FOMM (`GeneratorFullModel`,
//! `DiscriminatorFullModel`), from `tests/fixtures/fomm-train` (see its `make_fixture.py`):
//! the fomm-small checkpoint in train mode, FOMM+'s losses, a fixed TPS transform, and
//! torchvision's VGG19 with patterned weights loaded through the engine's importer; and with the
//! official TPSMM (its `GeneratorFullModel`), from `tests/fixtures/tpsmm-train`: the tpsmm-small
//! checkpoint in train mode at epoch 40 (background motion on, no dropout), the same VGG19;
//! and one step of its AVD training (`train_avd.py`), from `tests/fixtures/tpsmm-avd`.

mod common;

use common::{cpu, fixture};
use prioritycut_engine::augment::{RandomTps, TpsForm};
use prioritycut_engine::burn::tensor::{Device, Tensor, TensorData};
use prioritycut_engine::checkpoint::FommModels;
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::config::tpsmm::TpsmmConfigFile;
use prioritycut_engine::import::load_tpsmm_checkpoint;
use prioritycut_engine::import::load_vgg19;
use prioritycut_engine::loss::{PerceptualFeatures, PerceptualLoss};
use prioritycut_engine::model::tpsmm::TpsmmModels;
use prioritycut_engine::npy::NpyArray;
use prioritycut_engine::train::learner::GeneratorPass;
use prioritycut_engine::train::{AvdLearner, Learner, StepLearner, TpsmmLearner};

fn npy(name: &str) -> NpyArray {
    NpyArray::read(&fixture("fomm-train").join(format!("{name}.npy"))).expect("fixture array")
}

fn tpsmm_npy(name: &str) -> NpyArray {
    NpyArray::read(&fixture("tpsmm-train").join(format!("{name}.npy"))).expect("fixture array")
}

fn tensor<const D: usize>(array: &NpyArray, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(array.data.clone(), array.shape.clone()), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

/// max |ours − reference| / max |reference|.
fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference
        .iter()
        .fold(0.0f64, |m, v| m.max((*v as f64).abs()))
        .max(1e-30);
    let worst = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    worst / scale
}

fn check(name: &str, ours: Vec<f32>, reference: &NpyArray, tolerance: f64) {
    let error = relative_error(&ours, &reference.data);
    eprintln!("{name:>44}: relative error {error:.2e} (tolerance {tolerance:.0e})");
    assert!(error <= tolerance, "{name} differs from the official step by {error:e}");
}

/// The learner with the fixture's networks, and its inputs on the autodiff device.
fn fixture_learner() -> (Learner, Tensor<4>, Tensor<4>, RandomTps) {
    fixture_learner_on(&cpu(), true)
}

/// [`fixture_learner`] on `device`, with the fixture's VGG19 or (`vgg19` false: a faster step
/// whose perceptual term is not the official one) the pixel pyramid.
fn fixture_learner_on(device: &Device, vgg19: bool) -> (Learner, Tensor<4>, Tensor<4>, RandomTps) {
    let config = FommConfig::from_yaml_file(fixture("fomm-train/config.yaml")).expect("config");
    let device = device.clone();
    let train = device.clone().autodiff();
    let vgg_file = fixture("fomm-train/vgg19-pattern.pth");
    let features = if vgg19 {
        PerceptualFeatures::Vgg19 {
            net: load_vgg19(&vgg_file, &train).expect("torchvision-layout VGG19"),
            weights: vgg_file.display().to_string(),
        }
    } else {
        PerceptualFeatures::PixelPyramid
    };
    let perceptual = PerceptualLoss::new(
        features,
        &config.train.scales,
        &config.train.loss_weights.perceptual,
        &train,
    );
    let mut learner = Learner::new(config.clone(), perceptual, &device).expect("learner");
    let models = FommModels::load(&fixture("fomm-small/checkpoint.pth.tar"), &config, &train).expect("checkpoint");
    learner.nets.kp_detector = models.kp_detector;
    learner.nets.generator = models.generator;
    learner.nets.discriminator = Some(models.discriminator);

    let small = |name: &str| NpyArray::read(&fixture("fomm-small").join(format!("{name}.npy"))).expect("input");
    let source = tensor(&small("source"), &train);
    let driving = tensor(&small("driving"), &train);
    let theta = npy("transform_theta");
    let params = npy("transform_control_params");
    let theta: Vec<[[f32; 3]; 2]> = theta
        .data
        .chunks_exact(6)
        .map(|t| [[t[0], t[1], t[2]], [t[3], t[4], t[5]]])
        .collect();
    let control: Vec<Vec<f32>> = params.data.chunks_exact(25).map(<[f32]>::to_vec).collect();
    (learner, source, driving, RandomTps::new(theta, 5, control))
}

/// The parameters whose gradients the fixture holds, by its names.
fn probed_params(learner: &Learner) -> Vec<(&'static str, Tensor<4>)> {
    let nets = &learner.nets;
    vec![
        ("generator_final_weight", nets.generator.final_conv.weight.val()),
        (
            "generator_dense_motion_mask_weight",
            nets.generator.dense_motion_network.mask.weight.val(),
        ),
        ("kp_detector_kp_weight", nets.kp_detector.kp.weight.val()),
        (
            "kp_detector_jacobian_weight",
            nets.kp_detector.jacobian.as_ref().expect("jacobian head").weight.val(),
        ),
    ]
}

/// The probed parameters whose gradient of `term` is smooth at the fixture. gen_gan reaches the
/// keypoint heads through the warps of the source (bilinear sampling, whose gradient with respect
/// to the sampling grid is piecewise constant): moving the fixture's source by 1e-7 of itself
/// moved torch's own gen_gan gradients of the keypoint and Jacobian heads by 9.7e-3 and 5.8e-3
/// (in 4 of 6 tries), of the generator's two layers by under 2.7e-5. The keypoint heads are
/// checked through the equivariance terms, which do not warp the source.
fn smooth_params(learner: &Learner, term: &str) -> Vec<(&'static str, Tensor<4>)> {
    let mut params = probed_params(learner);
    if term == "gen_gan" {
        params.retain(|(name, _)| name.starts_with("generator_"));
    }
    params
}

/// The weighted loss named `term` of a pass's `(name, loss)` list.
fn term_loss(losses: &[(&str, Tensor<1>)], term: &str) -> Tensor<1> {
    losses
        .iter()
        .find(|(n, _)| *n == term)
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| panic!("no {term}"))
}

/// `term`'s gradients of the [`smooth_params`], by a backward from `pass`, against the official
/// step's; `label` prefixes the printed names.
fn check_term_gradients(learner: &Learner, pass: &GeneratorPass, term: &str, label: &str) {
    let loss = term_loss(&pass.losses, term);
    let grads = loss.backward();
    for (param, value) in smooth_params(learner, term) {
        let name = format!("grad_{term}_{param}");
        let reference = npy(&name);
        match value.grad(&grads) {
            Some(grad) => check(&format!("{label}{name}"), values(grad), &reference, 1e-4),
            // No path from this term to this parameter, in torch either.
            None => assert!(reference.data.iter().all(|&v| v == 0.0), "{name}: no gradient"),
        }
    }
}

#[test]
fn generator_step_losses_and_outputs_match_the_official_training_code() {
    let (learner, source, driving, transform) = fixture_learner();
    let pass = learner.generator_pass(&source, &driving, &transform);
    check(
        "prediction",
        values(pass.generated.prediction.clone()),
        &npy("prediction"),
        1e-4,
    );
    check(
        "transformed_frame",
        values(pass.transformed_frame.clone().expect("equivariance on")),
        &npy("transformed_frame"),
        1e-4,
    );
    let kp = pass.kp_transformed.clone().expect("equivariance on");
    check(
        "transformed_kp_value",
        values(kp.value),
        &npy("transformed_kp_value"),
        1e-4,
    );
    check(
        "transformed_kp_jacobian",
        values(kp.jacobian.expect("jacobian")),
        &npy("transformed_kp_jacobian"),
        1e-4,
    );
    let names: Vec<&str> = pass.losses.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        vec![
            "perceptual",
            "gen_gan",
            "feature_matching",
            "equivariance_value",
            "equivariance_jacobian"
        ]
    );
    for (name, loss) in &pass.losses {
        check(
            &format!("loss {name}"),
            values(loss.clone()),
            &npy(&format!("loss_{name}")),
            1e-4,
        );
    }

    // The discriminator step sees the spectral-norm state the generator step left.
    let device = learner.device.clone();
    let disc = learner.discriminator_pass(&driving, &pass, None);
    assert_eq!(disc.losses.len(), 1);
    check(
        "loss disc_gan",
        values(disc.losses[0].1.clone()),
        &npy("loss_disc_gan"),
        1e-4,
    );
    let grads = disc.total(&device).backward();
    let d = &learner.nets.discriminator.as_ref().expect("FOMM+ discriminator").discs[0];
    for (name, param) in [
        ("grad_discriminator_conv_weight", d.conv.weight.val()),
        ("grad_discriminator_first_weight", d.down_blocks[0].conv.weight.val()),
    ] {
        let grad = param.grad(&grads).unwrap_or_else(|| panic!("{name}: no gradient"));
        check(name, values(grad), &npy(name), 1e-4);
    }
}

/// The same step on wgpu with the kernels crate's GPU convolutions forced on (a software adapter
/// keeps burn's by default): the network-level check of our GPU convolutions under autodiff,
/// forward and backward. Without VGG19 (with it the test took 403 s on llvmpipe, 83 s without):
/// every output and loss but the perceptual one, gen_gan's gradients of the generator's layers
/// and equivariance_jacobian's of the keypoint heads (a second forward), none of which pass
/// through VGG19. (Feature matching's per-parameter gradients jump under rounding, see
/// `feature_matching_gradient_matches_at_the_official_prediction`: on llvmpipe they were 2.6e-4,
/// 9.6e-4, 5.3e-4 and 7.2e-4 from torch's, the very jumps a 1e-7 move of the source gives torch.)
/// The only test of this binary on wgpu, so the process-wide choice is its.
#[test]
fn generator_step_matches_on_wgpu_with_our_gpu_kernels() {
    use prioritycut_engine::kernels::gpu::{self, KernelChoice};

    let Some(device) = common::wgpu_device() else {
        return;
    };
    gpu::choose(KernelChoice::Ours);
    let (learner, source, driving, transform) = fixture_learner_on(&device, false);
    let pass = learner.generator_pass(&source, &driving, &transform);
    check(
        "wgpu prediction",
        values(pass.generated.prediction.clone()),
        &npy("prediction"),
        1e-4,
    );
    for (name, loss) in pass.losses.iter().filter(|(name, _)| *name != "perceptual") {
        check(
            &format!("wgpu loss {name}"),
            values(loss.clone()),
            &npy(&format!("loss_{name}")),
            1e-4,
        );
    }
    check_term_gradients(&learner, &pass, "gen_gan", "wgpu ");
    let (learner, source, driving, transform) = fixture_learner_on(&device, false);
    let pass = learner.generator_pass(&source, &driving, &transform);
    check_term_gradients(&learner, &pass, "equivariance_jacobian", "wgpu ");
    gpu::choose(KernelChoice::Auto);
}

/// Gradients of each generator term that is smooth at the fixture, for the probed parameters
/// ([`smooth_params`]), each from a fresh forward. (Feature matching's: below, at torch's
/// prediction.)
#[test]
fn generator_step_gradients_match_term_by_term() {
    for term in ["gen_gan", "equivariance_value", "equivariance_jacobian"] {
        let (learner, source, driving, transform) = fixture_learner();
        let pass = learner.generator_pass(&source, &driving, &transform);
        check_term_gradients(&learner, &pass, term, "");
    }
}

/// The perceptual term's gradient is discontinuous in the prediction (an L1 of VGG features
/// with max pooling), so it is compared at torch's own prediction, with respect to it.
#[test]
fn perceptual_gradient_matches_at_the_official_prediction() {
    check_at_official_prediction("perceptual", |learner, prediction, driving| {
        learner.perceptual.forward(prediction, driving)
    });
}

/// The loss `term` computes from torch's prediction (and the driving frame), and its gradient
/// with respect to that prediction, against the official step's.
fn check_at_official_prediction(term: &str, loss_of: impl FnOnce(&Learner, &Tensor<4>, &Tensor<4>) -> Tensor<1>) {
    let (learner, _, driving, _) = fixture_learner();
    let prediction: Tensor<4> = tensor::<4>(&npy("prediction"), &learner.device).require_grad();
    let loss = loss_of(&learner, &prediction, &driving);
    check(
        &format!("loss {term} at torch's prediction"),
        values(loss.clone()),
        &npy(&format!("loss_{term}")),
        1e-4,
    );
    let grads = loss.backward();
    let grad = prediction.grad(&grads).expect("gradient");
    let name = format!("grad_{term}_prediction");
    check(&name, values(grad), &npy(&name), 1e-4);
}

/// The feature-matching term is an L1 of the discriminator's features, whose gradient flips sign
/// where real and generated features nearly agree: moving the fixture's source by 1e-7 of itself
/// moved torch's own gradients of the probed parameters by up to 2.6e-4 (generator final) and 5e-3
/// (keypoints), more than this engine's prediction, 1e-5 from torch's, can be held to. So, like the
/// perceptual term, it is compared at torch's own prediction, with respect to it, where a 1e-7
/// move changed torch's gradient by under 5e-6. (gen_gan, smooth, is checked per parameter above.)
#[test]
fn feature_matching_gradient_matches_at_the_official_prediction() {
    check_at_official_prediction("feature_matching", |learner, prediction, driving| {
        let kp_driving = learner.nets.kp_detector.forward(driving.clone()).value.detach();
        term_loss(
            &learner.adversarial_terms(prediction, driving, &kp_driving),
            "feature_matching",
        )
    });
}

/// torchvision's VGG19 layout loads through the importer (its classifier key ignored, the
/// deflated storages read) and computes FOMM's five slices.
#[test]
fn vgg19_slices_match_torchvision() {
    let device = cpu();
    let vgg = load_vgg19(&fixture("fomm-train/vgg19-pattern.pth"), &device).expect("vgg");
    let small = NpyArray::read(&fixture("fomm-small/driving.npy")).expect("input");
    let frame: Tensor<4> = tensor::<4>(&small, &device).slice([0..1, 0..3, 0..32, 0..32]);
    for (i, slice) in vgg.forward(frame).into_iter().enumerate() {
        let name = format!("vgg_slice_{}", i + 1);
        check(&name, values(slice), &npy(&name), 1e-4);
    }
}

#[test]
fn vgg19_import_errors_name_the_problem() {
    let device = cpu();
    let dir = common::temp_dir("vgg-errors");
    let err = load_vgg19(&fixture("fomm-small/checkpoint.pth.tar"), &device).expect_err("not VGG19");
    assert!(err.to_string().contains("features."), "{err}");
    let truncated = dir.join("cut.pth");
    let bytes = std::fs::read(fixture("fomm-train/vgg19-pattern.pth")).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
    let err = load_vgg19(&truncated, &device).expect_err("truncated");
    assert!(err.to_string().contains("cut.pth"), "{err}");
    assert!(load_vgg19(&dir.join("missing.pth"), &device).is_err());
}

/// The fixture's transform (`transform_theta`, `transform_control_params`) in `form`.
fn fixture_transform(theta: &NpyArray, params: &NpyArray, form: TpsForm) -> RandomTps {
    let theta: Vec<[[f32; 3]; 2]> = theta
        .data
        .chunks_exact(6)
        .map(|t| [[t[0], t[1], t[2]], [t[3], t[4], t[5]]])
        .collect();
    let control: Vec<Vec<f32>> = params.data.chunks_exact(25).map(<[f32]>::to_vec).collect();
    RandomTps::new(theta, 5, control).in_form(form)
}

/// The epoch `tests/fixtures/tpsmm-train` took its step at (its config's `epoch`).
const TPSMM_EPOCH: usize = 40;

/// TPSMM's learner with the tpsmm-small networks and the fixture's VGG19, and its inputs.
fn tpsmm_fixture_learner() -> (TpsmmLearner, Tensor<4>, Tensor<4>, RandomTps) {
    let config = TpsmmConfigFile::read(&fixture("tpsmm-train/config.yaml")).expect("config");
    assert_eq!(config.ignored_keys, vec!["epoch".to_string()]);
    let device = cpu();
    let train = device.clone().autodiff();
    let vgg_file = fixture("fomm-train/vgg19-pattern.pth");
    let features = PerceptualFeatures::Vgg19 {
        net: load_vgg19(&vgg_file, &train).expect("torchvision-layout VGG19"),
        weights: vgg_file.display().to_string(),
    };
    let perceptual = PerceptualLoss::new(
        features,
        &config.train.scales,
        &config.train.loss_weights.perceptual,
        &train,
    );
    let mut config = config;
    config.prioritycut.variant = prioritycut_engine::config::Variant::Fomm;
    let mut learner = TpsmmLearner::new(config.clone(), perceptual, &device).expect("learner");
    let mut models = TpsmmModels::new(&config.config, &train);
    load_tpsmm_checkpoint(&fixture("tpsmm-small/checkpoint.pth.tar"), &mut models).expect("checkpoint");
    learner.nets.kp_detector = models.kp_detector;
    learner.nets.dense_motion_network = models.dense_motion_network;
    learner.nets.inpainting_network = models.inpainting_network;
    learner.nets.bg_predictor = models.bg_predictor;

    let small = |name: &str| NpyArray::read(&fixture("tpsmm-small").join(format!("{name}.npy"))).expect("input");
    let source = tensor(&small("source"), &train);
    let driving = tensor(&small("driving"), &train);
    let transform = fixture_transform(
        &tpsmm_npy("transform_theta"),
        &tpsmm_npy("transform_control_params"),
        TpsForm::Tpsmm,
    );
    (learner, source, driving, transform)
}

#[test]
fn tpsmm_generator_step_losses_and_outputs_match_the_official_training_code() {
    let (learner, source, driving, transform) = tpsmm_fixture_learner();
    let pass = learner.generator_pass(&source, &driving, &transform, TPSMM_EPOCH, &[]);
    // 1.03e-4 measured (an Intel Xeon, flex), 1.74e-4 with every map under 32² by our patches
    // (a Zen 4): the keypoints of the train-mode ResNet-18 (batch statistics) differ by 1e-5
    // and the thin-plate splines amplify that. Moving both frames by 1e-7 of themselves moved
    // torch's own keypoints by 5.3e-6 and 7.9e-6 and its prediction by 8.9e-5 and 7.0e-5.
    check(
        "tpsmm prediction",
        values(pass.generated.prediction.clone()),
        &tpsmm_npy("prediction"),
        3e-4,
    );
    check(
        "tpsmm kp_driving",
        values(pass.kp_driving.value.clone()),
        &tpsmm_npy("kp_driving"),
        1e-4,
    );
    check(
        "tpsmm bg_param",
        values(pass.bg_param.clone().expect("epoch 40 is past bg_start")),
        &tpsmm_npy("bg_param"),
        1e-4,
    );
    check(
        "tpsmm transformed_frame",
        values(pass.transformed_frame.clone().expect("equivariance on")),
        &tpsmm_npy("transformed_frame"),
        1e-4,
    );
    check(
        "tpsmm transformed_kp",
        values(pass.kp_transformed.clone().expect("equivariance on").value),
        &tpsmm_npy("transformed_kp"),
        1e-4,
    );
    let names: Vec<&str> = pass.losses.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, vec!["perceptual", "equivariance_value", "warp_loss", "bg"]);
    for (name, loss) in &pass.losses {
        // The perceptual loss of a prediction that is itself 1e-4 from torch's: moving both
        // frames by 1e-7 of themselves moved torch's own by 5.5e-5 and 1.2e-4 (two tries).
        let tolerance = if *name == "perceptual" { 3e-4 } else { 1e-4 };
        check(
            &format!("tpsmm loss {name}"),
            values(loss.clone()),
            &tpsmm_npy(&format!("loss_{name}")),
            tolerance,
        );
    }
    // Three train-mode passes of the keypoint detector (source, driving, transformed frame)
    // moved its batch norms' running statistics as torch's did.
    let bn1 = &learner.nets.kp_detector.fg_encoder.bn1;
    check(
        "tpsmm kp_detector bn1 running_mean",
        values(bn1.running_mean.value_sync()),
        &tpsmm_npy("kp_detector_bn1_running_mean"),
        1e-4,
    );
}

/// Gradients of TPSMM's equivariance and background terms for four parameters, each from a
/// fresh forward. (The warp loss's: below, at torch's keypoints.)
#[test]
fn tpsmm_generator_step_gradients_match_term_by_term() {
    tpsmm_gradients_match(&["equivariance_value", "bg"]);
}

/// The warp loss and its gradient with respect to the keypoints and the background motion, at
/// torch's values of those. An L1 between encoder levels masked by the occlusion masks: where a
/// mask is near 0 so are both sides, and their difference's sign flips with the flow's last
/// bits, so through the whole step (this engine's keypoints are 9e-6 from torch's) the
/// parameters' gradients differ by 1–5%; from the same keypoints they agree.
#[test]
fn tpsmm_warp_loss_gradient_matches_at_the_official_keypoints() {
    let (learner, source, driving, _) = tpsmm_fixture_learner();
    let device = learner.device.clone();
    let leaf = |name: &str| -> Tensor<3> { tensor::<3>(&tpsmm_npy(name), &device).require_grad() };
    let (kp_source, kp_driving, bg_param) = (leaf("kp_source"), leaf("kp_driving"), leaf("bg_param"));
    let keypoints = |value: &Tensor<3>| prioritycut_engine::model::Keypoints {
        value: value.clone(),
        jacobian: None,
    };
    let nets = &learner.nets;
    let motion = nets.dense_motion_network.forward(
        source.clone(),
        &keypoints(&kp_driving),
        &keypoints(&kp_source),
        Some(&bg_param),
        None,
    );
    let generated = nets.inpainting_network.forward(source, &motion);
    let loss = learner.warp_loss(&driving, &motion, &generated);
    check(
        "tpsmm warp loss at torch's keypoints",
        values(loss.clone()),
        &tpsmm_npy("warp_loss_unweighted"),
        1e-4,
    );
    let grads = loss.backward();
    for (name, value) in [
        ("kp_source", kp_source),
        ("kp_driving", kp_driving),
        ("bg_param", bg_param),
    ] {
        let name = format!("grad_warp_loss_{name}");
        let grad = value.grad(&grads).unwrap_or_else(|| panic!("{name}: no gradient"));
        check(&name, values(grad), &tpsmm_npy(&name), 1e-4);
    }
}

fn tpsmm_gradients_match(terms: &[&str]) {
    for &term in terms {
        let (learner, source, driving, transform) = tpsmm_fixture_learner();
        let pass = learner.generator_pass(&source, &driving, &transform, TPSMM_EPOCH, &[]);
        let loss = term_loss(&pass.losses, term);
        let grads = loss.backward();
        // The probed parameters in torch's layout (burn's Linear keeps [in, out], torch's [out, in]).
        let nets = &learner.nets;
        let bg = nets.bg_predictor.as_ref().expect("the fixture has bg: True");
        let linear = |w: Tensor<2>| w.grad(&grads).map(|g| values(g.transpose()));
        let conv = |w: Tensor<4>| w.grad(&grads).map(values);
        let probed = [
            (
                "kp_detector_fc_weight",
                linear(nets.kp_detector.fg_encoder.fc.weight.val()),
            ),
            (
                "dense_motion_maps_weight",
                conv(nets.dense_motion_network.maps.weight.val()),
            ),
            ("bg_predictor_fc_weight", linear(bg.bg_encoder.fc.weight.val())),
            (
                "kp_detector_conv1_weight",
                conv(nets.kp_detector.fg_encoder.conv1.weight.val()),
            ),
        ];
        for (param, grad) in probed {
            let name = format!("grad_{term}_{param}");
            let reference = tpsmm_npy(&name);
            match grad {
                Some(grad) => check(&name, grad, &reference, 1e-4),
                // No path from this term to this parameter, in torch either.
                None => assert!(reference.data.iter().all(|&v| v == 0.0), "{name}: no gradient"),
            }
        }
    }
}

/// TPSMM's perceptual term (FOMM's pyramid) at torch's prediction, and its gradient with
/// respect to it. Ignored: the loss agrees to 5e-6, the gradient by 1.0% in L1 (FOMM's fixture,
/// the same VGG19 and pyramid, agrees to 1e-4), and what differs is explained, not a fault of the
/// backward: at pyramid scales 0.5 and 0.25 the gradients agree to 4e-6, at scale 1 slices 1–3
/// to 5e-6, relu4_1's to 8e-4 and relu5_1's (a 4×4 map at 64 px) by 1.2%. There the engine's
/// forward is 1.2e-4 from torch's (3.2e-5 at relu4_1; the patterned weights amplify rounding
/// through 16 convolutions), and 0.12% of relu5_1's active features of prediction and target
/// lie closer than that, so the L1's sign flips at ~20 of them.
#[test]
#[ignore = "the perceptual L1's sign flips at ~20 near-equal relu5_1 features of this 64 px fixture"]
fn tpsmm_perceptual_gradient_matches_at_the_official_prediction() {
    let (learner, _, driving, _) = tpsmm_fixture_learner();
    let prediction: Tensor<4> = tensor::<4>(&tpsmm_npy("prediction"), &learner.device).require_grad();
    let loss = learner.perceptual.forward(&prediction, &driving);
    check(
        "tpsmm loss perceptual at torch's prediction",
        values(loss.clone()),
        &tpsmm_npy("loss_perceptual"),
        1e-4,
    );
    let grads = loss.backward();
    let grad = values(prediction.grad(&grads).expect("gradient"));
    // The L1 of VGG features flips sign where the two frames' features nearly agree, and float
    // rounding decides those (see ../fixtures/fomm-train): compared by the whole gradient's L1.
    let reference = tpsmm_npy("grad_perceptual_prediction");
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(f64::abs).sum::<f64>();
    let difference = norm(&mut grad.iter().zip(&reference.data).map(|(a, b)| f64::from(a - b)));
    let relative = difference / norm(&mut reference.data.iter().map(|&v| f64::from(v)));
    eprintln!("tpsmm grad_perceptual_prediction: relative L1 difference {relative:.2e}");
    assert!(relative < 1e-4, "the perceptual gradient differs by {relative:e} in L1");
}

fn avd_npy(name: &str) -> NpyArray {
    NpyArray::read(&fixture("tpsmm-avd").join(format!("{name}.npy"))).expect("fixture array")
}

/// The AVD learner started from the tpsmm-small checkpoint, and the fixture's batch: its source
/// and driving frames, each pair also swapped.
fn avd_fixture_learner() -> (AvdLearner, Tensor<4>, Tensor<4>, Tensor<2>) {
    let mut config = TpsmmConfigFile::read(&fixture("tpsmm-small/config.yaml")).expect("config");
    config.mode = prioritycut_engine::config::TrainingMode::TrainAvd;
    config.train_avd.batch_size = 4;
    let device = cpu();
    let train = device.clone().autodiff();
    let perceptual = PerceptualLoss::new(PerceptualFeatures::PixelPyramid, &[], &[], &train);
    let mut learner = AvdLearner::new(config, perceptual, &device).expect("learner");
    learner
        .start_from(&fixture("tpsmm-small/checkpoint.pth.tar"))
        .expect("checkpoint");
    let small = |name: &str| NpyArray::read(&fixture("tpsmm-small").join(format!("{name}.npy"))).expect("input");
    let (source, driving) = (
        tensor::<4>(&small("source"), &train),
        tensor::<4>(&small("driving"), &train),
    );
    let batch_source = Tensor::cat(vec![source.clone(), driving.clone()], 0);
    let batch_driving = Tensor::cat(vec![driving, source], 0);
    (learner, batch_source, batch_driving, tensor(&avd_npy("theta"), &train))
}

/// `train_avd.py`'s step: the detector's keypoints in train mode, the reconstruction from the
/// scaled driving keypoints, `rec_kp`, the AVD network's gradients, one Adam step, and the
/// running statistics the step moved. The AVD network is checked at the official keypoints: its
/// batch norms over 4 images amplify the detector's rounding (8.6e-6) about threefold. The
/// keypoints themselves are held to 2e-5: moving both frames by 1e-7 of themselves moved torch's
/// own by 7.0–7.8e-6 (three tries) — the train-mode ResNet-18's batch statistics amplify rounding.
#[test]
fn tpsmm_avd_step_matches_the_official_training_code() {
    let (learner, source, driving, theta) = avd_fixture_learner();
    let pass = learner.pass(&source, &driving, theta.clone());
    check(
        "avd kp_source",
        values(pass.kp_source.value.clone()),
        &avd_npy("kp_source"),
        2e-5,
    );
    check(
        "avd kp_driving",
        values(pass.kp_driving.value.clone()),
        &avd_npy("kp_driving"),
        2e-5,
    );
    check(
        "avd reconstruction (our keypoints)",
        values(pass.reconstruction.value.clone()),
        &avd_npy("reconstruction"),
        1e-4,
    );
    let device = source.device();
    let official = |name: &str| prioritycut_engine::model::Keypoints {
        value: tensor(&avd_npy(name), &device),
        jacobian: None,
    };
    let pass = learner.reconstruct(official("kp_source"), official("kp_driving"), theta.clone());
    check(
        "avd reconstruction",
        values(pass.reconstruction.value.clone()),
        &avd_npy("reconstruction"),
        1e-5,
    );
    check("avd rec_kp", values(pass.rec_kp.clone()), &avd_npy("rec_kp"), 1e-6);
    let grads = pass.rec_kp.backward();
    let avd = learner.avd_network();
    // burn's Linear keeps its weight as [in, out], torch's as [out, in].
    let decoder_0 = avd.decoder.linears[0].weight.grad(&grads).expect("gradient");
    check(
        "avd grad decoder.0.weight",
        values(decoder_0.transpose()),
        &avd_npy("grad_decoder_0_weight"),
        1e-5,
    );
    let id_norm = avd.id_encoder.norms[0].weight.grad(&grads).expect("gradient");
    check(
        "avd grad id_encoder.1.weight",
        values(id_norm),
        &avd_npy("grad_id_encoder_1_weight"),
        1e-5,
    );
    let last = avd.pose_encoder.linears.last().expect("layers");
    let pose_weight = last.weight.grad(&grads).expect("gradient");
    check(
        "avd grad pose_encoder[-1].weight",
        values(pose_weight.transpose()),
        &avd_npy("grad_pose_encoder_last_weight"),
        1e-5,
    );

    // The step itself, from a fresh start (the pass above moved the running statistics once).
    // Adam's first step moves a weight by lr·g/(|g| + ε), about lr·sign(g): it is compared where
    // the official gradient is at least 1e-3 of its largest, where ours is within 1% of it; a
    // near-zero gradient's rounding can turn its step either way.
    let (mut learner, source, driving, theta) = avd_fixture_learner();
    let before = values(learner.avd_network().decoder.linears[0].weight.val().transpose());
    let (report, _) = learner.step_with_scales(source, driving, 0, theta, false);
    assert!(!report.skipped, "{report:?}");
    let avd = learner.avd_network();
    let after = values(avd.decoder.linears[0].weight.val().transpose());
    let (official_after, official_grad) = (avd_npy("after_step_decoder_0_weight"), avd_npy("grad_decoder_0_weight"));
    let largest = official_grad.data.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    let (mut compared, mut worst) = (0usize, 0.0f32);
    for (i, g) in official_grad.data.iter().enumerate() {
        if g.abs() >= 1e-3 * largest {
            compared += 1;
            let (ours, theirs) = (after[i] - before[i], official_after.data[i] - before[i]);
            worst = worst.max((ours - theirs).abs());
        }
    }
    let lr = 1e-3;
    eprintln!(
        "avd Adam step on decoder.0.weight: {compared} of {} compared, worst {worst:.2e}",
        before.len()
    );
    assert!(
        compared * 5 >= before.len() * 4,
        "only {compared} of {} compared",
        before.len()
    );
    assert!(worst <= 1e-3 * lr, "Adam's step differs by {worst} (lr {lr})");
    check(
        "avd decoder.1.running_mean",
        values(avd.decoder.norms[0].running_mean.value_sync()),
        &avd_npy("decoder_1_running_mean"),
        1e-5,
    );
    let detector_mean = learner.models.kp_detector.fg_encoder.bn1.running_mean.value_sync();
    check(
        "kp_detector bn1 running_mean",
        values(detector_mean),
        &avd_npy("kp_detector_bn1_running_mean"),
        1e-5,
    );
}
