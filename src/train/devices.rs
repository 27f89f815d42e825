//! Which devices a run can use: the CPU, and CUDA devices when built with the `cuda`
//! feature.

use anyhow::{Context, Result, bail};
use candle_core::Device;

/// The device a config names.
pub fn device_for(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let idx = name
        .strip_prefix("cuda")
        .map(|r| r.trim_start_matches(':'))
        .map(|r| {
            if r.is_empty() {
                Ok(0)
            } else {
                r.parse::<usize>()
            }
        })
        .transpose()
        .ok()
        .flatten()
        .with_context(|| format!("unknown device `{name}` (use \"cpu\" or \"cuda:N\")"))?;
    if !candle_core::utils::cuda_is_available() {
        bail!(
            "device `{name}` asked for, but this build has no CUDA support (build with --features cuda, see scripts/build-cuda.sh) — use device = \"cpu\""
        );
    }
    Device::new_cuda(idx).map_err(|e| {
        anyhow::anyhow!(
            "CUDA device {idx} is not available ({e}); this machine's CUDA devices: {} — use device = \"cpu\"",
            describe_devices(&available_devices()[1..])
        )
    })
}

/// A device a run can use: its config name (`cpu`, `cuda:0`) and what to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub name: String,
    pub description: String,
}

/// The CPU, then each CUDA device the driver reports (none without the `cuda` feature, a
/// driver or a GPU).
pub fn available_devices() -> Vec<DeviceInfo> {
    let cpu = DeviceInfo {
        name: "cpu".into(),
        description: format!(
            "CPU ({} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    };
    #[allow(unused_mut)]
    let mut all = vec![cpu];
    #[cfg(feature = "cuda")]
    all.extend(cuda_devices());
    all
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
fn cuda_devices() -> Vec<DeviceInfo> {
    use candle_core::cuda_backend::cudarc::driver::result;
    if result::init().is_err() {
        return Vec::new();
    }
    let count = result::device::get_count().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let dev = result::device::get(i).ok()?;
            let name = result::device::get_name(dev).ok()?;
            // SAFETY: `dev` is a device handle the driver just returned.
            let bytes = unsafe { result::device::total_mem(dev) }.ok()?;
            Some(DeviceInfo {
                name: format!("cuda:{i}"),
                description: format!("{name}, {:.0} GiB", bytes as f64 / (1u64 << 30) as f64),
            })
        })
        .collect()
}

fn describe_devices(devices: &[DeviceInfo]) -> String {
    if devices.is_empty() {
        return "none".into();
    }
    devices
        .iter()
        .map(|d| format!("{} ({})", d.name, d.description))
        .collect::<Vec<_>>()
        .join(", ")
}
