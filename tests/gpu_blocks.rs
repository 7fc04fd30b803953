//! The blocks' inference form on the GPU, with the kernel launches it takes, and a model stored
//! in f16 there. In a binary of its own: CubeCL's launch observer counts every thread's launches, and the kernel choice is
//! process-wide, so no other test may run beside it.

mod common;

use common::{cpu, wgpu_device};
use prioritycut_engine::burn::tensor::Device;
use prioritycut_engine::kernels::test_support::largest_difference;

#[test]
fn blocks_in_their_inference_form_match_on_wgpu_in_few_launches() {
    use prioritycut_engine::kernels::gpu::{self, KernelChoice};

    let Some(device) = wgpu_device() else { return };
    gpu::choose(KernelChoice::Ours);
    blocks_in_their_inference_form_match_on_wgpu(&device);
    a_model_stored_in_f16_animates_real_frames_within_its_stated_error(&device);
    gpu::choose(KernelChoice::Auto);
}

/// The copies burn's autotuned matmul makes of an operand into the layout its chosen kernel
/// reads (cubek's `gemm` kernels take K-contiguous operands, the partitioned ones do not):
/// which kernel is fastest is timed in each process, so these launches vary between runs.
fn matmul_operand_copies(launches: &prioritycut_engine::backend::Launches) -> usize {
    launches
        .by_kernel
        .iter()
        .filter(|(name, _)| name.contains("CopyKernel"))
        .map(|(_, count)| count)
        .sum()
}

/// `--precision f16` on a GPU: the bundled (trained) model stored in f16 animates a real photo
/// by real video frames within the error README states against the same model in f32 on the
/// same device, with our kernels; its frame launches one kernel more (the input's cast to
/// f16). llvmpipe has `SHADER_F16`; an adapter without it is said so loudly.
fn a_model_stored_in_f16_animates_real_frames_within_its_stated_error(gpu: &Device) {
    use prioritycut_engine::backend::count_launches;
    use prioritycut_engine::burn::tensor::{DType, FloatDType};
    use prioritycut_engine::checkpoint::FommModels;
    use prioritycut_engine::config::FommConfig;
    use prioritycut_engine::frames::{frame_tensor, tensor_to_image};

    if !gpu.supports_dtype(DType::F16) {
        eprintln!("NOTE: this adapter has no SHADER_F16: the f16 model was NOT checked");
        return;
    }
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/figures-64");
    let config = FommConfig::read_yaml_file(bundled.join("config.yaml"))
        .expect("config")
        .config;
    let load = || FommModels::load(&bundled.join("model.bpk"), &config, gpu).expect("the bundled model");
    let f32_model = load().with_inference_form();
    let f16_model = load().in_precision(FloatDType::F16).with_inference_form();
    assert_eq!(f16_model.storage_dtype(), FloatDType::F16);
    let [height, width, _] = config.frame_shape;
    let frame = |name: &str| {
        let image = image::open(common::fixture("mtcnn").join(name))
            .expect("a real frame")
            .to_rgb8();
        frame_tensor(&image, (width as u32, height as u32), gpu)
    };
    let source = frame("astronaut.png");
    let drivings = ["carphone-000.png", "carphone-060.png", "carphone-119.png"].map(frame);
    let animate = |model: &FommModels, driving: &prioritycut_engine::burn::tensor::Tensor<4>| {
        let encoded = model.encode_source(source.clone());
        let kp_source = model.keypoints(source.clone());
        model
            .generate(&encoded, &model.keypoints(driving.clone()), &kp_source)
            .prediction
    };
    let (mut worst, mut total, mut count) = (0u8, 0u64, 0u64);
    for driving in &drivings {
        let reference = tensor_to_image(animate(&f32_model, driving));
        let half = tensor_to_image(animate(&f16_model, driving));
        for (a, b) in reference.as_raw().iter().zip(half.as_raw()) {
            worst = worst.max(a.abs_diff(*b));
            total += u64::from(a.abs_diff(*b));
            count += 1;
        }
    }
    let mean = total as f64 / count as f64;
    eprintln!("f16 against f32 on wgpu, the bundled model on real frames: largest {worst}/255, mean {mean:.3}/255");
    assert!(worst > 0, "f16 changed nothing: the model did not run in f16");
    // Measured on llvmpipe: 3/255 and 0.154/255 (README, "Precision"); 2/255 and 0.131/255 with
    // Winograd's tiles and products in f32, 17/255 with the kernels' sums in f16.
    assert!(worst <= 3 && mean <= 0.2, "largest {worst}/255, mean {mean:.3}/255");

    let frame_launches = |model: &FommModels| {
        let encoded = model.encode_source(source.clone());
        let kp_source = model.keypoints(source.clone());
        let launches = count_launches(gpu, || {
            let kp_driving = model.keypoints(drivings[0].clone());
            model.generate(&encoded, &kp_driving, &kp_source).prediction.into_data();
        })
        .expect("wgpu launches kernels");
        launches.total - matmul_operand_copies(&launches)
    };
    // Apart from the copies, which depend on the matmul kernel autotune timed fastest for each
    // precision (f32 53 + 2 copies against f16 54, and f32 53 against f16 54 + 2, in two runs).
    let (single, half) = (frame_launches(&f32_model), frame_launches(&f16_model));
    eprintln!("a frame's launches apart from matmul operand copies: f32 {single}, f16 {half}");
    assert!(half <= single + 1, "f16 {half} launches, f32 {single}");
}

/// The hourglass's and the bottleneck's blocks prepared on the GPU (batch norms folded, their
/// surroundings in Winograd's transforms) against the same blocks as trained on the CPU, at a
/// size that is no multiple of the 4×4 tiles, with three launches a convolution (and any copy
/// burn's matmul makes of its operands), one on small maps; convolutions of few outputs in one
/// launch. Called with our kernels chosen.
fn blocks_in_their_inference_form_match_on_wgpu(gpu: &Device) {
    use prioritycut_engine::backend::count_launches;
    use prioritycut_engine::burn::module::{Module, Param, RunningState};
    use prioritycut_engine::burn::tensor::activation::sigmoid;
    use prioritycut_engine::burn::tensor::{Distribution, Tensor};
    use prioritycut_engine::kernels::{convolve_concatenated, convolve_sigmoid};
    use prioritycut_engine::model::blocks::{
        AntiAliasInterpolation2d, BatchNorm2d, DownBlock2d, InferenceForm, ResBlock2d, SameBlock2d, UpBlock2d, conv,
    };

    let cpu = cpu();
    cpu.seed(11);
    let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &cpu);
    let values = |n: usize, low: f64, high: f64| Tensor::<1>::random([n], Distribution::Uniform(low, high), &cpu);
    // Running statistics and affine parameters far from the identity, so that a norm left out
    // or applied twice shows.
    let randomize = |norm: &mut BatchNorm2d| {
        let n = norm.weight.dims()[0];
        norm.weight = Param::from_tensor(values(n, 0.5, 1.5));
        norm.bias = Param::from_tensor(values(n, -0.3, 0.3));
        norm.running_mean = RunningState::new(values(n, -0.5, 0.5));
        norm.running_var = RunningState::new(values(n, 0.5, 2.0));
    };
    let check = |what: &str, expected: Tensor<4>, run: &dyn Fn() -> Tensor<4>, launches_expected: usize| {
        let ours = run();
        let (difference, scale) = largest_difference(ours.to_device(&cpu), expected);
        eprintln!("{what} prepared on wgpu: {difference:e} of {scale}");
        assert!(difference <= 2e-5 * scale.max(1.0), "{what}: {difference} of {scale}");
        let launches = count_launches(gpu, || {
            run().into_data();
        })
        .expect("wgpu launches kernels");
        // Every launch apart from the matmul's copies is one of ours.
        assert_eq!(
            launches.total - matmul_operand_copies(&launches),
            launches_expected,
            "{what}: {}",
            launches.top(8)
        );
    };
    // Maps of more than DIRECT_MAX_PIXELS run Winograd's three launches a convolution, smaller
    // ones (an hourglass's deepest levels) the direct kernel's one; the up blocks see their
    // input at twice its size.
    for (size, convolution_launches) in [([10, 14], 3), ([6, 8], 1)] {
        let [height, width] = size;
        let x = random([2, 12, height, width]);
        let on_gpu = x.clone().to_device(gpu);
        let at = |what: &str| format!("{what} at {height}×{width}");

        let mut down = DownBlock2d::<BatchNorm2d>::new(12, 16, &cpu);
        randomize(&mut down.norm);
        let expected = down.forward(x.clone());
        let down = down.to_device(gpu).into_inference_form();
        assert!(down.inference.is_some(), "a 3×3 block is prepared on wgpu");
        check(
            &at("DownBlock2d"),
            expected,
            &|| down.forward(on_gpu.clone()),
            convolution_launches,
        );

        let mut same = SameBlock2d::<BatchNorm2d>::new(12, 8, 3, 1, &cpu);
        randomize(&mut same.norm);
        let expected = same.forward(x.clone());
        let same = same.to_device(gpu).into_inference_form();
        check(
            &at("SameBlock2d 3×3"),
            expected,
            &|| same.forward(on_gpu.clone()),
            convolution_launches,
        );

        // A residual always takes Winograd's path (the second convolution).
        let mut res = ResBlock2d::<BatchNorm2d>::new(12, 3, 1, &cpu);
        randomize(&mut res.norm1);
        randomize(&mut res.norm2);
        let expected = res.forward(x.clone());
        let res = res.to_device(gpu).into_inference_form();
        check(
            &at("ResBlock2d"),
            expected,
            &|| res.forward(on_gpu.clone()),
            convolution_launches + 3,
        );
    }
    for (size, convolution_launches) in [([5, 7], 3), ([3, 4], 1)] {
        let [height, width] = size;
        let x = random([2, 12, height, width]);
        let on_gpu = x.clone().to_device(gpu);
        let at = |what: &str| format!("{what} from {height}×{width}");

        let mut up = UpBlock2d::<BatchNorm2d>::new(12, 8, &cpu);
        randomize(&mut up.norm);
        let expected = up.forward(x.clone());
        let up = up.to_device(gpu).into_inference_form();
        check(
            &at("UpBlock2d"),
            expected,
            &|| up.forward(on_gpu.clone()),
            convolution_launches,
        );

        // The hourglass's decoder hands an up block its input and the skip unconcatenated.
        let skip = random([2, 4, height, width]);
        let mut up = UpBlock2d::<BatchNorm2d>::new(16, 8, &cpu);
        randomize(&mut up.norm);
        let expected = up.forward(Tensor::cat(vec![x.clone(), skip.clone()], 1));
        let up = up.to_device(gpu).into_inference_form();
        let skip = skip.to_device(gpu);
        check(
            &at("UpBlock2d of a concatenation"),
            expected,
            &|| up.forward_concatenated(on_gpu.clone(), skip.clone()),
            convolution_launches,
        );
    }

    // Convolutions of few outputs, one launch each (the direct kernel): a network's stacked
    // heads reading its hourglass's output and skip in place, the generator's output with its
    // sigmoid, the anti-aliased downsampling.
    let head = random([1, 8, 12, 12]);
    let skip = random([1, 3, 12, 12]);
    let heads = conv(11, 50, 7, 3, &cpu);
    let expected = heads.forward(Tensor::cat(vec![head.clone(), skip.clone()], 1));
    let (heads, head, skip) = (heads.to_device(gpu), head.to_device(gpu), skip.to_device(gpu));
    check(
        "7×7 heads of an output and its skip",
        expected,
        &|| convolve_concatenated(&heads, head.clone(), skip.clone()),
        1,
    );
    let x = random([2, 16, 20, 18]);
    let output = conv(16, 3, 7, 3, &cpu);
    let expected = sigmoid(output.forward(x.clone()));
    let (output, on_gpu) = (output.to_device(gpu), x.to_device(gpu));
    check(
        "the generator's output and its sigmoid",
        expected,
        &|| convolve_sigmoid(&output, on_gpu.clone()),
        1,
    );
    let image = random([1, 3, 64, 48]);
    let downsample = AntiAliasInterpolation2d::new(3, 0.25, &cpu);
    let expected = downsample.forward(image.clone());
    let (downsample, image) = (downsample.to_device(gpu), image.to_device(gpu));
    check(
        "the anti-aliased downsampling",
        expected,
        &|| downsample.forward(image.clone()),
        1,
    );
}
