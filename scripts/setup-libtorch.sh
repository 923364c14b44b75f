#!/usr/bin/env bash
# Installs libtorch 2.13.0 (what tch 0.26 requires) from PyPI's torch wheel, cached outside
# the work tree, and prints the directory to use as LIBTORCH.
#
#   scripts/setup-libtorch.sh            # CPU build, or CUDA build when an NVIDIA GPU is present
#   LONGMEM_LIBTORCH=cuda scripts/...    # force the CUDA build
#   LONGMEM_LIBTORCH=cpu  scripts/...    # force the CPU build
#
# Idempotent: a finished install leaves a `.complete` marker and is reused as is.
# All progress goes to stderr; stdout is only the resulting directory.
set -euo pipefail

TORCH_VERSION=2.13.0
CUDA_RUNTIME_VERSION=13.0.96
CUPTI_VERSION=13.0.85
CACHE_ROOT="${LONGMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/longmem-bench}"

flavor="${LONGMEM_LIBTORCH:-auto}"
if [ "$flavor" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    flavor=cuda
  else
    flavor=cpu
  fi
fi
case "$flavor" in
  cpu|cuda) ;;
  *) echo "setup-libtorch: LONGMEM_LIBTORCH must be auto, cpu or cuda (got '$flavor')" >&2; exit 2 ;;
esac

dest="$CACHE_ROOT/libtorch-$TORCH_VERSION-$flavor"
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

log() { echo "setup-libtorch: $*" >&2; }
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1; then
    log "installing $2 with apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
  else
    log "'$1' is missing: install the '$2' package and rerun"; exit 1
  fi
}
need unzip unzip
need patchelf patchelf
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || { log "python3 with pip is required to fetch the torch wheel from PyPI"; exit 1; }

mkdir -p "$CACHE_ROOT"
work="$(mktemp -d "$CACHE_ROOT/.libtorch-tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT
wheels="$CACHE_ROOT/wheels"
mkdir -p "$wheels"

pip_download() {
  # pip (23) takes --platform literally, and the NVIDIA wheels carry older manylinux tags.
  local platforms=()
  for glibc in 28 27 26 25 24 17; do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
  "${PIP[@]}" download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 "${platforms[@]}" --platform manylinux2014_x86_64 \
    -d "$wheels" "$@" >&2
}

log "fetching torch==$TORCH_VERSION wheel ($flavor build; ~530 MB once, then cached)"
if [ "$flavor" = cuda ]; then
  # With dependencies: the CUDA 13 runtime wheels (cuBLAS, cuDNN, NCCL, ...) the wheel lists.
  pip_download "torch==$TORCH_VERSION"
else
  pip_download --no-deps "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
fi

torch_whl=$(ls "$wheels"/torch-"$TORCH_VERSION"-*.whl | head -n1)
unzip -q "$torch_whl" 'torch/lib/*' 'torch/include/*' -d "$work"
mkdir -p "$work/libtorch"
mv "$work/torch/lib" "$work/torch/include" "$work/libtorch/"

# CUDA runtime libraries sit beside libtorch's own so that one run path finds them all.
if [ "$flavor" = cuda ]; then
  nvidia_wheels=("$wheels"/nvidia_*.whl)
else
  nvidia_wheels=("$wheels"/nvidia_cuda_runtime-"$CUDA_RUNTIME_VERSION"-*.whl "$wheels"/nvidia_cuda_cupti-"$CUPTI_VERSION"-*.whl)
fi
for whl in "${nvidia_wheels[@]}"; do
  unzip -q -o "$whl" 'nvidia/*' -d "$work/nv"
done
find "$work/nv" -name '*.so*' -type f -exec cp -n {} "$work/libtorch/lib/" \;

if [ "$flavor" = cpu ]; then
  (cd "$work/libtorch/lib" && rm -f libtorch_cuda*.so libc10_cuda.so libtorch_nvshmem.so \
    libcaffe2_nvrtc.so libtorch_python.so)
  patchelf --remove-needed libtorch_cuda.so "$work/libtorch/lib/libtorch.so"
fi
echo "$TORCH_VERSION" > "$work/libtorch/build-version"
echo "$flavor" > "$work/libtorch/flavor"
touch "$work/libtorch/.complete"

rm -rf "$dest"
mv "$work/libtorch" "$dest"
log "installed $dest ($(du -sh "$dest" | cut -f1))"
echo "$dest"
