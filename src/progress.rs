//! Progress bars with ETA for long work (training steps, evaluation segments). They draw on
//! stderr only when it is a terminal and `-q` was not given, so CI logs and pipes stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns progress bars off for this process (`-q`).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// A bar of `len` units labelled `what`; hidden when bars are off or stderr is no terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let visible = ENABLED.load(Ordering::Relaxed) && std::io::stderr().is_terminal();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} {msg} (elapsed {elapsed}, ETA {eta})")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}
