# longmem-bench tasks. Every recipe installs libtorch first if it is missing (cached under
# ~/.cache/longmem-bench; CUDA build when an NVIDIA GPU is present, LONGMEM_LIBTORCH=cpu|cuda
# to choose), so no manual environment setup is ever needed.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Recipe arguments reach each line as "$@" (and $1, $2, ...), so `just run tokenize "hello
# world"` passes `hello world` as one argument, as it was given.
set positional-arguments

export LIBTORCH := `scripts/setup-libtorch.sh`

# List the recipes.
default:
    @just --list

# The default study on CPU (experiments/reproduce*.toml; 27 to 42 minutes on 2 cores once the
# dependencies are built): a backbone pretrained once, LongMem at two SideNet depths, MemTRM,
# plain and the frozen backbone over 3 seeds and a memory-size x chunk-size grid, then
# in-context learning with demonstrations in memory, then long-term memory at M = 65536 on
# 131072-token needle documents (reproduce-long.toml).
# Finished runs are skipped, so a second run only rewrites the report in results/reproduce/.
reproduce: build-dev
    cargo run --quiet -- doctor
    cargo run --quiet -- sweep experiments/reproduce.toml
    cargo run --quiet -- sweep experiments/reproduce-icl.toml
    cargo run --quiet -- sweep experiments/reproduce-long.toml
    cargo run --quiet -- report experiments/reproduce.toml experiments/reproduce-icl.toml experiments/reproduce-long.toml --out results/reproduce

# Tests that need what a machine lacks skip themselves, each printing a line
# `SKIPPED: <test>: <reason>`; test-cuda, test-slurm and test-faiss run them or fail.
# The test suite (CPU; tests needing a GPU, Slurm, faiss-cpu or just print SKIPPED lines).
test:
    cargo test --workspace --no-fail-fast

# The GPU tests (tests/cuda.rs), failing instead of skipping without a CUDA device.
test-cuda:
    LONGMEM_REQUIRE=cuda cargo test --test cuda

# Needs Debian's slurm-wlm and munge, and root to start a private local Slurm.
# The real-Slurm test (tests/slurm.rs), failing instead of skipping where Slurm cannot start.
test-slurm:
    LONGMEM_REQUIRE=slurm cargo test --test slurm

# The bench tests (tests/bench.rs) with faiss-cpu (pip-installed if missing), failing without it.
test-faiss:
    python3 -c 'import faiss, numpy' 2>/dev/null || python3 -m pip install --quiet faiss-cpu numpy
    LONGMEM_REQUIRE=faiss cargo test --test bench

# Benchmarks on this machine, CPU by default (about 5 minutes on 2 cores): exact retrieval at
# the paper's shape and over memory x chunk size, with faiss-cpu IndexFlatIP side by side
# (pip-installed here if missing; skipped with a message where that fails), memory writes,
# bank size, each method's forward and training step, and the matmul peak. Writes
# results/bench/BENCH.md and bench.csv. ARGS go to `longmem bench` (e.g. --device cuda).
bench *ARGS: build-dev
    python3 -c 'import faiss, numpy' 2>/dev/null || python3 -m pip install --quiet faiss-cpu numpy || echo "faiss-cpu could not be installed: the comparison will be skipped"
    cargo run --quiet -- bench "$@"

# Release build of the `longmem` binary (runs without LD_LIBRARY_PATH: libtorch's path is embedded).
build:
    cargo build --release

# Dev-profile build (optimised dependencies), what `run`, `test` and `reproduce` use.
build-dev:
    cargo build

# Arguments are passed through as given, quoted ones whole (`just run tokenize "hello world"`).
# Run the CLI, e.g. `just run doctor` or `just run train experiments/tiny/pretrain.toml`.
run *ARGS:
    cargo run --quiet -- "$@"

# Format the code.
fmt:
    cargo fmt

# Clippy with warnings denied, and a formatting check.
lint:
    cargo fmt --check
    cargo clippy --workspace --all-targets -- -D warnings

# Versions, devices and measured matmul peak.
doctor:
    cargo run --quiet -- doctor
