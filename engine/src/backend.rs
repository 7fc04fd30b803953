//! Run-time choice of the device the engine computes on, and how it is named to the user.
//!
//! Default: burn's wgpu backend on a real GPU (Vulkan/Metal/DX12, any vendor). Without one,
//! `flex` (burn's pure-Rust CPU backend): wgpu on a software adapter (llvmpipe) works but is
//! tens of times slower, so it is used only when asked for. burn's CubeCL `cpu` backend is not
//! built: its build script downloads a prebuilt LLVM, which offline builds cannot do.
//!
//! The description names the language CubeCL compiles the kernels to. Only WGSL is built: burn's
//! `vulkan` feature (SPIR-V on Vulkan adapters) makes Mesa's llvmpipe crash while compiling a
//! reduction kernel, and CubeCL 0.11 cannot keep one Vulkan adapter on WGSL.

use std::fmt;
use std::str::FromStr;

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};

use crate::{EngineError, Result};

/// What the user asked for (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// wgpu on a hardware GPU if there is one, else the CPU default.
    #[default]
    Auto,
    /// wgpu, on whatever adapter it finds (a software one included).
    Wgpu,
    /// wgpu on one adapter: its place in [`list_adapters`] (`prioritycut devices`), for machines
    /// with several (a laptop's integrated and discrete GPUs).
    WgpuAdapter(usize),
    /// The CPU default: `flex`.
    Cpu,
    /// burn's pure-Rust CPU backend.
    Flex,
}

impl BackendChoice {
    pub const NAMES: [&'static str; 5] = ["auto", "wgpu", "wgpu:N", "cpu", "flex"];
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::WgpuAdapter(index) => write!(f, "wgpu:{index}"),
            Self::Cpu => f.write_str("cpu"),
            Self::Flex => f.write_str("flex"),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        if let Some(index) = lower.strip_prefix("wgpu:").or_else(|| lower.strip_prefix("gpu:")) {
            return index.parse().map(Self::WgpuAdapter).map_err(|_| {
                EngineError::Invalid(format!(
                    "'{s}': after 'wgpu:' comes an adapter's number from `prioritycut devices` (0, 1, ...)"
                ))
            });
        }
        match lower.as_str() {
            "auto" => Ok(Self::Auto),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "cpu" => Ok(Self::Cpu),
            "flex" => Ok(Self::Flex),
            other => Err(EngineError::Invalid(format!(
                "unknown backend '{other}' (choose one of {})",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// The backend actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Wgpu,
    Flex,
}

/// A ready device and a sentence saying what it is.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub kind: BackendKind,
    /// e.g. "wgpu (Vulkan, WGSL kernels) on NVIDIA H100 [discrete GPU]" or "flex (CPU, pure Rust)".
    pub description: String,
    /// Why the choice fell where it did, when it was not what was asked for.
    pub note: Option<String>,
}

impl fmt::Display for SelectedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.description)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

fn flex(note: Option<String>) -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        kind: BackendKind::Flex,
        description: "flex (CPU, pure Rust)".into(),
        note,
    }
}

/// Opens the wgpu runtime on `adapter` (an index into [`list_adapters`]; `None`: wgpu's own
/// choice) and says which adapter it got. Fails cleanly when there is none.
///
/// For wgpu's own choice Vulkan is asked first where it is the native API: wgpu's automatic
/// choice goes on to probe OpenGL/EGL when Vulkan has only a software adapter, and EGL prints
/// driver noise on headless machines. Elsewhere, or without a Vulkan adapter, wgpu chooses.
fn open_wgpu(adapter: Option<usize>) -> std::result::Result<(Device, wgpu::AdapterInfo), String> {
    // CubeCL registers a device's runtime once per process: a second registration, or two at
    // once from two threads, fails ("Service already initialized"). So each adapter opened is
    // kept for the process, and opening is serialized.
    type Opened = Vec<(Option<usize>, Device, wgpu::AdapterInfo)>;
    static OPENED: std::sync::Mutex<Opened> = std::sync::Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, device, info)) = opened.iter().find(|(asked, ..)| *asked == adapter) {
        return Ok((device.clone(), info.clone()));
    }
    let first = match adapter {
        None => open_wgpu_default()?,
        Some(index) => open_wgpu_listed(index)?,
    };
    opened.push((adapter, first.0.clone(), first.1.clone()));
    Ok(first)
}

fn open_wgpu_default() -> std::result::Result<(Device, wgpu::AdapterInfo), String> {
    if cfg!(not(any(target_os = "macos", target_os = "ios")))
        && let Ok(opened) = open_wgpu_with(Device::wgpu_options().graphics_api(WgpuBackend::Vulkan))
    {
        return Ok(opened);
    }
    open_wgpu_with(Device::wgpu_options().graphics_api(WgpuBackend::Auto))
}

/// Opens adapter `index` of [`list_adapters`]. CubeCL addresses an adapter by its API, its
/// kind and its place among the adapters of that kind on that API, so that is what the index
/// is turned into.
fn open_wgpu_listed(index: usize) -> std::result::Result<(Device, wgpu::AdapterInfo), String> {
    let adapters = list_adapters();
    let Some(listed) = adapters.get(index) else {
        return Err(match adapters.len() {
            0 => format!("there is no adapter {index}: wgpu finds none on this machine"),
            1 => format!("there is no adapter {index}: wgpu finds one, adapter 0 (`prioritycut devices` lists it)"),
            n => format!(
                "there is no adapter {index}: wgpu finds {n} (0 to {}; `prioritycut devices` lists them)",
                n - 1
            ),
        });
    };
    let info = &listed.info;
    let same_kind_before = adapters[..index]
        .iter()
        .filter(|other| other.info.backend == info.backend && other.info.device_type == info.device_type)
        .count();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(same_kind_before),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(same_kind_before),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(same_kind_before),
        wgpu::DeviceType::Cpu if same_kind_before == 0 => DeviceKind::Cpu,
        wgpu::DeviceType::Cpu => {
            return Err(format!(
                "adapter {index} ({}) cannot be opened by number: burn opens only the first software adapter",
                info.name
            ));
        }
        wgpu::DeviceType::Other => {
            return Err(format!(
                "adapter {index} ({}) cannot be opened by number: burn has no name for an adapter of kind Other; try --backend wgpu",
                info.name
            ));
        }
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan => WgpuBackend::Vulkan,
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        wgpu::Backend::Gl => WgpuBackend::Gl,
        other => {
            return Err(format!(
                "adapter {index} ({}) is on {other:?}, which is not built",
                info.name
            ));
        }
    };
    let (device, opened) = open_wgpu_with(Device::wgpu_options().device_kind(kind).graphics_api(api))?;
    if opened.name != info.name {
        // Enumeration order changed between the listing and the opening (a GPU came or went).
        return Err(format!(
            "asked for adapter {index} ({}) but wgpu opened {}; run `prioritycut devices` again",
            info.name, opened.name
        ));
    }
    Ok((device, opened))
}

fn open_wgpu_with(
    options: burn::tensor::wgpu::WgpuOptions,
) -> std::result::Result<(Device, wgpu::AdapterInfo), String> {
    // Adapter discovery lives in driver code; a broken driver must not take the process down.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| options.init_with_setup()));
    match opened {
        Ok(Ok((device, setup))) => Ok((device, setup.adapter.get_info())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the wgpu driver panicked while opening the adapter".into()),
    }
}

/// The language CubeCL compiles this device's kernels to, read off its runtime's name
/// ("wgpu<spirv>"): SPIR-V on a Vulkan adapter that has SPIR-V's required features, MSL on
/// Metal, WGSL otherwise.
fn kernel_language(device: &Device) -> Option<&'static str> {
    let name = <burn::backend::Dispatch as burn::backend::Backend>::name(device.as_dispatch());
    [("wgpu<spirv>", "SPIR-V"), ("wgpu<msl>", "MSL"), ("wgpu<wgsl>", "WGSL")]
        .into_iter()
        .find_map(|(runtime, language)| name.contains(runtime).then_some(language))
}

fn describe_adapter(info: &wgpu::AdapterInfo, device: &Device) -> String {
    let api = match kernel_language(device) {
        Some(language) => format!("{:?}, {language} kernels", info.backend),
        None => format!("{:?}", info.backend),
    };
    format!("wgpu ({api}) on {} [{}]", info.name, adapter_kind(info.device_type))
}

/// An adapter's kind, for a person.
fn adapter_kind(device_type: wgpu::DeviceType) -> &'static str {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software rasterizer on the CPU",
        wgpu::DeviceType::Other => "other adapter",
    }
}

/// A wgpu device the user asked for by name (`wgpu`, `wgpu:N`), software adapters included.
fn asked_wgpu(device: Device, info: &wgpu::AdapterInfo) -> SelectedDevice {
    let software = info.device_type == wgpu::DeviceType::Cpu;
    if software {
        crate::kernels::gpu::use_burn_kernels_on(&device);
    }
    // Said only where it holds: `--gpu-kernels` (bench) can ask for ours there.
    let note = (software && crate::kernels::gpu::choice() == crate::kernels::gpu::KernelChoice::Auto)
        .then(|| "burn's kernels, the default on a software adapter".to_string());
    SelectedDevice {
        description: describe_adapter(info, &device),
        device,
        kind: BackendKind::Wgpu,
        note,
    }
}

/// Picks and opens the device for `choice`.
pub fn select(choice: BackendChoice) -> Result<SelectedDevice> {
    match choice {
        BackendChoice::Flex => Ok(flex(None)),
        BackendChoice::Cpu => Ok(flex(Some("the CPU default".into()))),
        BackendChoice::Wgpu | BackendChoice::WgpuAdapter(_) => {
            let adapter = match choice {
                BackendChoice::WgpuAdapter(index) => Some(index),
                _ => None,
            };
            let (device, info) = open_wgpu(adapter).map_err(|message| EngineError::Backend {
                backend: choice.to_string(),
                message: match adapter {
                    Some(_) => message,
                    None => format!("no usable adapter: {message}"),
                },
            })?;
            Ok(asked_wgpu(device, &info))
        }
        BackendChoice::Auto => match open_wgpu(None) {
            Ok((device, info)) if info.device_type != wgpu::DeviceType::Cpu => Ok(SelectedDevice {
                description: describe_adapter(&info, &device),
                device,
                kind: BackendKind::Wgpu,
                note: None,
            }),
            Ok((_, info)) => Ok(flex(Some(format!(
                "no GPU; wgpu found only {}, slower than flex: choose it with --backend wgpu (in the window: Device)",
                info.name
            )))),
            Err(message) => Ok(flex(Some(format!("no GPU adapter: {}", first_line(&message))))),
        },
    }
}

/// What a GPU failure was, in a line, read off the message of the panic burn raised for it
/// (burn's tensor reads panic when CubeCL reports a failed allocation or a lost device).
/// `None` for any other panic.
pub fn gpu_failure(panic_message: &str) -> Option<String> {
    const ALLOCATION: &str = "can't allocate buffer of size: ";
    if let Some((_, rest)) = panic_message.split_once(ALLOCATION) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let size = digits
            .parse::<u64>()
            .map(|bytes| format!("{} MiB", bytes.div_ceil(1 << 20)))
            .unwrap_or_else(|_| "a buffer".into());
        return Some(format!("the GPU could not allocate {size} (out of memory)"));
    }
    let lower = panic_message.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("outofmemory") {
        return Some("the GPU ran out of memory".into());
    }
    if lower.contains("device lost") || lower.contains("devicelost") || lower.contains("poisoned") {
        return Some("the GPU device was lost".into());
    }
    lower
        .contains("an error happened during execution")
        .then(|| format!("the GPU failed: {}", first_line(panic_message)))
}

thread_local! {
    /// Set while [`catch_gpu_failure`] runs work on this thread: the panic hook stays quiet
    /// about GPU failures there (they become a line of their own).
    static CATCHING_GPU_FAILURES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work`, which computes on `device`; on a GPU, a failure of the device itself (out of
/// memory, device lost: see [`gpu_failure`]) becomes `Err` with its line, so that the caller
/// can go on elsewhere (on flex) instead of crashing. Any other panic goes on unwinding. On the
/// CPU `work` just runs.
pub fn catch_gpu_failure<T>(device: &Device, work: impl FnOnce() -> T) -> std::result::Result<T, String> {
    if !launches_kernels(device) {
        return Ok(work());
    }
    catch_any_gpu_failure(work)
}

/// The step or frame at which a test asks, through the environment `variable`, for a failure
/// to be injected (a GPU's out-of-memory, non-finite data); `None` when unset or not a number.
pub(crate) fn injection_point(variable: &str) -> Option<usize> {
    std::env::var(variable).ok().and_then(|v| v.parse().ok())
}

/// Asks the GPU behind `device` for one buffer larger than the largest it can make, and reads
/// it: the GPU's own out-of-memory failure, raised by burn as when a network outgrows the card.
/// Tests provoke it to check what follows one (the work going on on the CPU). On the CPU,
/// nothing happens.
pub fn provoke_gpu_out_of_memory(device: &Device) {
    let Some(largest) = crate::kernels::gpu::largest_buffer(device) else {
        return;
    };
    let values = largest / size_of::<f32>() + 1;
    let _ = burn::tensor::Tensor::<1>::zeros([values], device).into_data();
}

/// [`catch_gpu_failure`] for work that opens its device(s) itself (a command): whatever GPU it
/// computes on, that device's failure becomes `Err` with its line.
pub fn catch_any_gpu_failure<T>(work: impl FnOnce() -> T) -> std::result::Result<T, String> {
    quiet_panic_hook_for_gpu_failures();
    let was = CATCHING_GPU_FAILURES.replace(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CATCHING_GPU_FAILURES.set(was);
    outcome.or_else(|panic| {
        let message = crate::error::panic_message(panic);
        match gpu_failure(&message) {
            Some(failure) => Err(failure),
            None => std::panic::resume_unwind(Box::new(message)),
        }
    })
}

/// Wraps the process's panic hook once: a GPU failure inside [`catch_gpu_failure`] is not
/// printed (CubeCL's report runs to dozens of lines); everything else is, as before.
fn quiet_panic_hook_for_gpu_failures() {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = crate::error::panic_text(info.payload()).unwrap_or("");
            if CATCHING_GPU_FAILURES.get() && gpu_failure(message).is_some() {
                return;
            }
            previous(info);
        }));
    });
}

/// The GPU kernels launched while some work ran: how many, and how many of each kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Launches {
    pub total: usize,
    /// (kernel name, launches), most launched first.
    pub by_kernel: Vec<(String, usize)>,
}

impl Launches {
    /// The `n` most launched kernels as `name ×count`, names shortened to their last part.
    pub fn top(&self, n: usize) -> String {
        self.by_kernel
            .iter()
            .take(n)
            .map(|(name, count)| format!("{} x{count}", short_kernel_name(name)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `cubek_convolution::kernels::forward::direct::DirectConv<f32, ...>` → `DirectConv`.
fn short_kernel_name(name: &str) -> &str {
    let without_generics = name.split('<').next().unwrap_or(name);
    without_generics.rsplit("::").next().unwrap_or(without_generics)
}

/// Counts every kernel CubeCL launches on the thread-independent, process-wide observer.
#[derive(Default)]
struct LaunchCounter {
    by_kernel: std::sync::Mutex<std::collections::HashMap<&'static str, usize>>,
}

impl cubecl::logging::LaunchObserver for LaunchCounter {
    fn launched(&self, kernel: &'static str) {
        // Called on the launching thread under CubeCL's lock: a map update, nothing more.
        if let Ok(mut counts) = self.by_kernel.lock() {
            *counts.entry(kernel).or_default() += 1;
        }
    }
}

/// Whether work on `device` runs as CubeCL kernel launches (wgpu), not on the CPU (flex).
pub fn launches_kernels(device: &Device) -> bool {
    crate::kernels::gpu::is_cube(device)
}

/// Runs `work` on `device` and counts the GPU kernels it launches (each a `dispatch_workgroups`
/// on wgpu), fused kernels included: the device is synchronised before and after, since fused
/// work is launched lazily on burn's fusion thread. On devices without GPU kernels (flex) the
/// work is not run and the answer is `None`. Autotuning's trial launches count too: run the work
/// once before counting.
pub fn count_launches(device: &Device, work: impl FnOnce()) -> Option<Launches> {
    if !launches_kernels(device) {
        return None;
    }
    let _ = device.sync();
    let counter = std::sync::Arc::new(LaunchCounter::default());
    let observation = cubecl::logging::LaunchObservation::new(counter.clone());
    work();
    let _ = device.sync();
    drop(observation);
    let counts = counter.by_kernel.lock().map(|c| c.clone()).unwrap_or_default();
    let mut by_kernel: Vec<(String, usize)> = counts.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    by_kernel.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total = by_kernel.iter().map(|(_, n)| n).sum();
    Some(Launches { total, by_kernel })
}

/// A wgpu adapter of this machine, as `prioritycut devices` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub info: wgpu::AdapterInfo,
    /// Half-precision arithmetic in shaders (`SHADER_F16`).
    pub shader_f16: bool,
    /// Subgroup (warp/wave) operations.
    pub subgroups: bool,
    /// Atomic float adds in storage buffers (`SHADER_FLOAT32_ATOMIC`).
    pub float32_atomics: bool,
    /// The largest storage buffer a kernel may bind, in bytes.
    pub max_storage_buffer_bytes: u64,
}

impl AdapterSummary {
    /// One line: name, API, kind, driver and what matters to the engine's kernels.
    pub fn describe(&self) -> String {
        let info = &self.info;
        let flag = |on: bool| if on { "yes" } else { "no" };
        format!(
            "{} | {:?} | {:?} | driver {} {} | f16 {} | subgroups {} | f32 atomics {} | max storage buffer {} MiB",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            flag(self.shader_f16),
            flag(self.subgroups),
            flag(self.float32_atomics),
            self.max_storage_buffer_bytes >> 20
        )
    }
}

/// The adapters wgpu finds on its native APIs (Vulkan, Metal, DX12; OpenGL is left out, as
/// [`open_wgpu`] leaves it out where Vulkan is there). Empty when there are none: no GPU, no
/// Vulkan loader, or no driver (ICD) for it.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    // Driver code: a broken driver must not take the process down.
    // The instance is dropped, not used again, after a panic.
    let adapters = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
    }))
    .unwrap_or_default();
    adapters
        .iter()
        .map(|adapter| {
            let features = adapter.features();
            AdapterSummary {
                info: adapter.get_info(),
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
                subgroups: features.contains(wgpu::Features::SUBGROUP),
                float32_atomics: features.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
                max_storage_buffer_bytes: adapter.limits().max_storage_buffer_binding_size,
            }
        })
        .collect()
}

/// A device a person can pick (the window's device menu): the choice and its one-line label.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOption {
    pub choice: BackendChoice,
    pub label: String,
}

/// What can be chosen on this machine: the automatic choice, the CPU, and each wgpu adapter by
/// its number (software adapters included, said as such).
pub fn device_options() -> Vec<DeviceOption> {
    let mut options = vec![
        DeviceOption {
            choice: BackendChoice::Auto,
            label: "auto: a GPU if there is one, else the CPU".into(),
        },
        DeviceOption {
            choice: BackendChoice::Flex,
            label: "CPU: flex (pure Rust)".into(),
        },
    ];
    options.extend(list_adapters().into_iter().enumerate().map(|(index, adapter)| {
        let info = &adapter.info;
        let slow = if info.device_type == wgpu::DeviceType::Cpu {
            ": slow"
        } else {
            ""
        };
        DeviceOption {
            choice: BackendChoice::WgpuAdapter(index),
            label: format!(
                "wgpu:{index}: {} ({:?}, {}{slow})",
                info.name,
                info.backend,
                adapter_kind(info.device_type)
            ),
        }
    }));
    options
}

/// Runs a future that completes without waiting on anything else, as wgpu's native adapter
/// queries do (no executor needed).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_names() {
        assert_eq!("WGPU".parse::<BackendChoice>().ok(), Some(BackendChoice::Wgpu));
        assert_eq!("flex".parse::<BackendChoice>().ok(), Some(BackendChoice::Flex));
        let err = "cuda".parse::<BackendChoice>().expect_err("not built");
        assert!(err.to_string().contains("auto, wgpu, wgpu:N, cpu, flex"));
        assert_eq!(
            "wgpu:1".parse::<BackendChoice>().ok(),
            Some(BackendChoice::WgpuAdapter(1))
        );
        assert_eq!(BackendChoice::WgpuAdapter(1).to_string(), "wgpu:1");
        let err = "wgpu:first".parse::<BackendChoice>().expect_err("not a number");
        assert!(err.to_string().contains("prioritycut devices"), "{err}");
        for choice in ["auto", "wgpu", "wgpu:3", "cpu", "flex"] {
            assert_eq!(
                choice.parse::<BackendChoice>().map(|c| c.to_string()).ok().as_deref(),
                Some(choice)
            );
        }
    }

    /// CubeCL's report of a failed allocation, as burn's read panics with it (abridged from
    /// llvmpipe), and what is not a GPU failure.
    #[test]
    fn gpu_failures_are_told_from_other_panics() {
        let allocation = "Error while reading data: use `try_into_data` instead to catch the error at runtime: \
            An error happened during execution\nCaused by:\n  Several failures at once\nCaused by:\n  \
            An IO error happened\nCaused by:\n  can't allocate buffer of size: 268435456\nNo backtrace available";
        assert_eq!(
            gpu_failure(allocation).as_deref(),
            Some("the GPU could not allocate 256 MiB (out of memory)")
        );
        assert_eq!(
            gpu_failure("Device lost: the driver reset").as_deref(),
            Some("the GPU device was lost")
        );
        assert_eq!(
            gpu_failure("index out of bounds: the len is 3 but the index is 7"),
            None
        );
    }

    /// A command's GPU failure becomes its line (what `prioritycut train` / `bench` print
    /// instead of a panic); any other panic goes on unwinding.
    #[test]
    fn a_commands_gpu_failure_is_caught_and_other_panics_are_not() {
        let failed = catch_any_gpu_failure(|| -> u32 {
            std::panic::panic_any("Error while reading data: can't allocate buffer of size: 256901120".to_string())
        });
        assert_eq!(failed, Err("the GPU could not allocate 245 MiB (out of memory)".into()));
        assert_eq!(catch_any_gpu_failure(|| 7), Ok(7));
        let other = std::panic::catch_unwind(|| catch_any_gpu_failure(|| -> u32 { panic!("a bug of ours") }));
        assert!(other.is_err(), "a panic that is not the GPU's is not swallowed");
    }
}
