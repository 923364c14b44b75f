//! The one place that seeds every random number generator of a run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Seeds libtorch (CPU and every CUDA device) and returns the run's Rust RNG. Call it once
/// at the start of a run, before any weights are created; same seed, same numbers on CPU.
pub fn seed_everything(seed: u64) -> ChaCha8Rng {
    // libtorch takes an i64; the bit pattern is what matters.
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
    ChaCha8Rng::seed_from_u64(seed)
}
