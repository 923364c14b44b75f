//! Tracing logs to stderr; results never go there.

use tracing_subscriber::EnvFilter;

/// `-q`: errors only; default: info; `-v`: debug; `-vv`: trace. `RUST_LOG` overrides all.
pub fn init(verbose: u8, quiet: bool) {
    if quiet {
        crate::progress::disable();
    }
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
