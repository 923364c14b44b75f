//! What the CPU is: its model name and the vector extensions that matter to matmul and
//! search speed, from `/proc/cpuinfo` (Linux; "unknown CPU" and none elsewhere).

/// Extensions worth naming beside a CPU figure, in this order, where the CPU has them.
const FEATURES: [&str; 8] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

fn cpuinfo_field(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The CPU's model name, e.g. "AMD EPYC" or "Intel(R) Xeon(R) Processor".
pub fn cpu_model() -> String {
    cpuinfo_field("model name").unwrap_or_else(|| "unknown CPU".into())
}

/// The extensions of [`FEATURES`] the CPU reports.
pub fn cpu_features() -> Vec<&'static str> {
    let flags = cpuinfo_field("flags").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    FEATURES.into_iter().filter(|f| flags.contains(f)).collect()
}

/// "model (ext, ext, …)", the CPU as results name it.
pub fn cpu_description() -> String {
    match cpu_features() {
        f if f.is_empty() => cpu_model(),
        f => format!("{} ({})", cpu_model(), f.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_the_model_and_only_known_features() {
        let d = cpu_description();
        assert!(d.starts_with(&cpu_model()), "{d}");
        assert!(cpu_features().iter().all(|f| FEATURES.contains(f) && d.contains(f)));
    }
}
