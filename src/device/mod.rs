//! Devices: parsing the user's choice (`cpu`, `cuda`, `cuda:N`, `auto`), describing what
//! this machine has, and measuring each device's matmul peak (the physical limit that MFU
//! figures are given against).

mod cpu;
mod peak;

pub use cpu::{cpu_description, cpu_features, cpu_model};
pub use peak::{measure_matmul_peak, MatmulPeak};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use tch::Device;

/// A device as written in a spec or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    /// The first CUDA device when there is one, else the CPU.
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {0:?}: use cpu, cuda, cuda:N or auto")]
    Parse(String),
    #[error(
        "device {requested} was asked for but {found}; use `cpu` or `auto`, or run on a \
         machine with that GPU (`longmem doctor` lists the devices)"
    )]
    Unavailable { requested: String, found: String },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "auto" => Ok(Self::Auto),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = DeviceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl DeviceSpec {
    /// The spec that names `device` (the CPU for devices specs cannot name).
    pub fn of(device: Device) -> Self {
        match device {
            Device::Cuda(n) => DeviceSpec::Cuda(n),
            _ => DeviceSpec::Cpu,
        }
    }

    /// The concrete device. Asking for a GPU that is not there is an error, never a silent
    /// fall-back to the CPU.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda(n) => {
                let count = cuda_device_count();
                if n < count {
                    Ok(Device::Cuda(n))
                } else {
                    let found = match count {
                        0 => "no CUDA device is available".to_string(),
                        c => format!("only {c} CUDA device(s) exist (cuda:0..cuda:{})", c - 1),
                    };
                    Err(DeviceError::Unavailable {
                        requested: self.to_string(),
                        found,
                    })
                }
            }
        }
    }
}

/// Number of usable CUDA devices (0 with a CPU-only libtorch).
pub fn cuda_device_count() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// `cpu` or `cuda:N`, as recorded in results.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Waits for queued CUDA work on `device`; a no-op on CPU. Call before reading a clock.
pub fn synchronize(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

/// Versions that every result records.
/// Makes glibc's allocator keep freed memory for reuse instead of handing it back to the
/// kernel. By default every allocation above 32 MiB is a fresh `mmap`, so each large tensor
/// (retrieved keys and values, logits, activations) is page-faulted in anew on every step:
/// at the paper's shape that is a quarter of retrieval's time (`longmem bench`). Call it
/// first thing in `main`, before any allocation it should govern. A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub longmem_bench: String,
    pub tch: String,
    pub libtorch: String,
}

impl Versions {
    pub fn current() -> Self {
        Self {
            longmem_bench: env!("CARGO_PKG_VERSION").into(),
            tch: env!("LONGMEM_TCH_VERSION").into(),
            libtorch: env!("LONGMEM_LIBTORCH_VERSION").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_others() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(err.contains("cpu, cuda, cuda:N or auto"), "{err}");
        }
        for spec in [DeviceSpec::Cpu, DeviceSpec::Cuda(2), DeviceSpec::Auto] {
            assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn a_missing_gpu_is_an_error_not_a_fallback() {
        let count = cuda_device_count();
        let err = DeviceSpec::Cuda(count).resolve().unwrap_err().to_string();
        assert!(err.contains(&format!("cuda:{count}")), "{err}");
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
    }

    #[test]
    fn versions_are_recorded() {
        let v = Versions::current();
        assert_eq!(v.libtorch, "2.13.0", "built against another libtorch: {v:?}");
        assert!(v.tch.starts_with("0.26"), "{v:?}");
    }
}
