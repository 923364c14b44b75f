//! Wall-clock accounting of named stages (backbone, retrieval, joint attention, memory
//! write). Disabled clocks cost nothing; an enabled one synchronises CUDA before every
//! clock read, so GPU work is charged to the stage that queued it.

use std::cell::RefCell;
use std::time::{Duration, Instant};
use tch::Device;

/// The stages a memory model's step is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The backbone forward (frozen for LongMem; with MemTRM, everything but its memory layer's retrieval and joint attention).
    Backbone,
    /// Top-k search and gathering of retrieved keys/values.
    Retrieval,
    /// Local + memory attention of the memory-augmented layer, excluding retrieval.
    JointAttention,
    /// Writing the segment's keys/values into the bank.
    MemoryWrite,
    /// The SideNet outside its memory layer's attention, and the LM head.
    SideNet,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Backbone,
        Stage::Retrieval,
        Stage::JointAttention,
        Stage::MemoryWrite,
        Stage::SideNet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Backbone => "backbone",
            Stage::Retrieval => "retrieval",
            Stage::JointAttention => "joint_attention",
            Stage::MemoryWrite => "memory_write",
            Stage::SideNet => "sidenet",
        }
    }
}

/// Accumulated time per stage. `None` device: disabled.
#[derive(Debug, Default)]
pub struct StageClock {
    device: Option<Device>,
    spent: RefCell<[Duration; Stage::ALL.len()]>,
}

impl StageClock {
    /// An enabled clock for work on `device`.
    pub fn new(device: Device) -> Self {
        Self {
            device: Some(device),
            spent: RefCell::new([Duration::ZERO; Stage::ALL.len()]),
        }
    }

    /// A clock that measures nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn enabled(&self) -> bool {
        self.device.is_some()
    }

    /// Runs `f`, charging its wall time (CUDA synchronised before and after) to `stage`.
    pub fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let Some(device) = self.device else { return f() };
        crate::device::synchronize(device);
        let start = Instant::now();
        let out = f();
        crate::device::synchronize(device);
        self.spent.borrow_mut()[stage as usize] += start.elapsed();
        out
    }

    /// [`StageClock::time`], minus the time `f` charged to the `nested` stages inside it, so
    /// each moment is counted once.
    pub fn time_excluding<T>(&self, stage: Stage, nested: &[Stage], f: impl FnOnce() -> T) -> T {
        if !self.enabled() {
            return f();
        }
        let inner = || nested.iter().map(|&s| self.spent(s)).sum::<Duration>();
        let before = inner();
        let out = self.time(stage, f);
        let nested_time = inner() - before;
        let mut spent = self.spent.borrow_mut();
        spent[stage as usize] = spent[stage as usize].saturating_sub(nested_time);
        out
    }

    pub fn spent(&self, stage: Stage) -> Duration {
        self.spent.borrow()[stage as usize]
    }
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_clock_measures_nothing_and_an_enabled_one_accumulates() {
        let off = StageClock::disabled();
        assert_eq!(off.time(Stage::Retrieval, || 7), 7);
        assert_eq!(off.spent(Stage::Retrieval), Duration::ZERO);
        let on = StageClock::new(Device::Cpu);
        on.time(Stage::Retrieval, || std::thread::sleep(Duration::from_millis(5)));
        on.time(Stage::Retrieval, || std::thread::sleep(Duration::from_millis(5)));
        assert!(on.spent(Stage::Retrieval) >= Duration::from_millis(10));
        assert_eq!(on.spent(Stage::Backbone), Duration::ZERO);
        // Nested time is charged once, to the inner stage.
        on.time_excluding(Stage::JointAttention, &[Stage::Retrieval], || {
            on.time(Stage::Retrieval, || std::thread::sleep(Duration::from_millis(20)));
        });
        assert!(on.spent(Stage::Retrieval) >= Duration::from_millis(30));
        assert!(
            on.spent(Stage::JointAttention) < Duration::from_millis(10),
            "{:?}",
            on.spent(Stage::JointAttention)
        );
        assert!(peak_rss_bytes().unwrap() > 1 << 20);
    }
}
