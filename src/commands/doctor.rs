//! `longmem doctor`: what this machine offers the study, including the measured matmul
//! peak of every device (later figures are given as a fraction of it).

use crate::cli::DoctorArgs;
use crate::device::{cuda_device_count, measure_matmul_peak, MatmulPeak, Versions};
use serde::Serialize;
use std::time::Duration;
use tch::{Device, Kind};

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub versions: Versions,
    pub libtorch_dir: String,
    pub cpu_threads: i32,
    pub cuda_devices: usize,
    pub cudnn: bool,
    /// `nvidia-smi`'s name and memory of each GPU, when it is installed.
    pub gpus: Vec<String>,
    pub matmul: Vec<MatmulPeak>,
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let report = collect(args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let v = &report.versions;
    println!("longmem-bench {}", v.longmem_bench);
    println!("tch {}, libtorch {} ({})", v.tch, v.libtorch, report.libtorch_dir);
    println!("cpu: {} intra-op threads", report.cpu_threads);
    match report.cuda_devices {
        0 => println!("cuda: not available (CPU-only libtorch or no GPU)"),
        n => {
            println!("cuda: {n} device(s), cuDNN {}", if report.cudnn { "yes" } else { "no" });
            for gpu in &report.gpus {
                println!("  {gpu}");
            }
        }
    }
    println!(
        "matmul peak (median of {} timed batches):",
        report.matmul.first().map_or(0, |m| m.samples)
    );
    for m in &report.matmul {
        println!(
            "  {:<7} {:<9} n={:<5} {:>9.1} GFLOP/s  (best {:.1})",
            m.device, m.dtype, m.n, m.gflops_median, m.gflops_max
        );
    }
    Ok(())
}

fn collect(args: &DoctorArgs) -> DoctorReport {
    let samples = 5;
    let min_sample = Duration::from_millis(200);
    let mut matmul = vec![measure_matmul_peak(
        Device::Cpu,
        Kind::Float,
        args.cpu_n,
        samples,
        min_sample,
    )];
    let cuda_devices = cuda_device_count();
    for i in 0..cuda_devices {
        for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
            matmul.push(measure_matmul_peak(
                Device::Cuda(i),
                kind,
                args.cuda_n,
                samples,
                min_sample,
            ));
        }
    }
    DoctorReport {
        versions: Versions::current(),
        libtorch_dir: env!("LONGMEM_LIBTORCH_DIR").into(),
        cpu_threads: tch::get_num_threads(),
        cuda_devices,
        cudnn: tch::Cuda::cudnn_is_available(),
        gpus: nvidia_smi_gpus(),
        matmul,
    }
}

fn nvidia_smi_gpus() -> Vec<String> {
    let output = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name,memory.total", "--format=csv,noheader"])
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}
