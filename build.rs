//! Embeds a run path to libtorch's lib dir in every binary of this package, so `longmem`
//! (and `cargo install --path .`) runs without `LD_LIBRARY_PATH`, and records the versions
//! that `longmem doctor` and every run's metadata report. Compiles the fused memory attention
//! (`csrc/memory_attention.cpp`, a torch autograd function) against the same libtorch.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=Cargo.lock");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = PathBuf::from(&libtorch).join("lib");
        // DT_RPATH (not RUNPATH) so that libtorch's own dependencies, such as the CUDA
        // runtime placed beside it, are found through it too.
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        let version = libtorch_version(Path::new(&libtorch)).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=LONGMEM_LIBTORCH_VERSION={version}");
        println!("cargo:rustc-env=LONGMEM_LIBTORCH_DIR={libtorch}");
        compile_kernels(Path::new(&libtorch));
    } else {
        println!("cargo:rustc-env=LONGMEM_LIBTORCH_VERSION=unknown");
        println!("cargo:rustc-env=LONGMEM_LIBTORCH_DIR=unknown");
    }
    let tch = std::fs::read_to_string("Cargo.lock")
        .ok()
        .and_then(|lock| locked_version(&lock, "tch"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LONGMEM_TCH_VERSION={tch}");
}

/// The C++ kernels, with torch-sys's ABI setting (C++20, which libtorch 2.13's headers are written for), always optimised.
fn compile_kernels(libtorch: &Path) {
    println!("cargo:rerun-if-changed=csrc/memory_attention.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let include = libtorch.join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .opt_level(3)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++20")
        .flag("-ffp-contract=fast")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/memory_attention.cpp")
        .compile("longmem_csrc");
}

/// `TORCH_VERSION` from libtorch's `include/torch/version.h`, else its `build-version` file.
fn libtorch_version(root: &Path) -> Option<String> {
    let header = root.join("include/torch/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    if let Ok(text) = std::fs::read_to_string(&header) {
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("#define TORCH_VERSION ") {
                return Some(rest.trim().trim_matches('"').to_string());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let next = lines.next()?;
            return Some(next.trim().strip_prefix("version = ")?.trim_matches('"').to_string());
        }
    }
    None
}
