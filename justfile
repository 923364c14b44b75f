# longmem-bench tasks. Every recipe installs libtorch first if it is missing (cached under
# ~/.cache/longmem-bench; CUDA build when an NVIDIA GPU is present, LONGMEM_LIBTORCH=cpu|cuda
# to choose), so no manual environment setup is ever needed.

set shell := ["bash", "-euo", "pipefail", "-c"]

export LIBTORCH := `scripts/setup-libtorch.sh`

# List the recipes.
default:
    @just --list

# The tiny studies on CPU (about ten minutes): for each, pretrain a backbone, train LongMem,
# MemTRM and the plain control, evaluate them. Finished runs are skipped; results land in
# runs/tiny/ (long-range recall) and runs/icl/ (in-context learning).
reproduce: build-dev
    cargo run --quiet -- doctor
    for study in tiny icl; do \
      for method in pretrain longmem memtrm plain; do cargo run --quiet -- train experiments/$study/$method.toml; done; \
      for method in longmem memtrm plain; do cargo run --quiet -- eval experiments/$study/$method.toml; done; \
    done

# The test suite (CPU; CUDA tests skip themselves without a GPU).
test:
    cargo test --no-fail-fast

# Benchmarks (today: the matmul peak every later figure is measured against).
bench:
    cargo run --quiet -- doctor

# Release build of the `longmem` binary (runs without LD_LIBRARY_PATH: libtorch's path is embedded).
build:
    cargo build --release

# Dev-profile build (optimised dependencies), what `run`, `test` and `reproduce` use.
build-dev:
    cargo build

# Run the CLI, e.g. `just run doctor` or `just run train experiments/tiny/pretrain.toml`.
run *ARGS:
    cargo run --quiet -- {{ARGS}}

# Format the code.
fmt:
    cargo fmt

# Clippy with warnings denied, and a formatting check.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Versions, devices and measured matmul peak.
doctor:
    cargo run --quiet -- doctor
