#!/usr/bin/env bash
# Download into .whl/ (git-ignored) every wheel benchmarks/gpu_throughput.py needs on the GPU
# machine beyond what its image has (torch, torchvision, lightning, torchmetrics, timm, pandas,
# pyarrow, transformers, huggingface-hub, ... are there; it has no network): the two peers,
# their missing dependencies, and our four packages built with `uv build`.
# Usage: benchmarks/fetch_gpu_wheels.sh   (then see benchmarks/results/gpu_notes.md to run)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
limit_mib=60
rm -rf "$dest"
mkdir -p "$dest"

peers=(stable-pretraining==0.1.8 lightly==1.6.0)
# Imported by the peers on the way to spt.Module / spt.forward / spt.data.gpu_transforms and
# lightly.loss / lightly.transforms, and absent from the GPU image (one version each).
deps=(
  loguru==0.7.3 kornia==0.9.0 kornia_rs==0.2.0 prettytable==3.18.0 wcwidth==0.9.4
  submitit==1.5.4 richuru==0.1.1 datasets==4.4.1 dill==0.4.0 multiprocess==0.70.18
  requests-cache==1.3.3 cattrs==26.2.1 url-normalize==3.1.0 platformdirs==4.14.9
  hydra-core==1.3.2 omegaconf==2.3.0
)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest" "${peers[@]}" "${deps[@]}"
# omegaconf 2.3 needs antlr4 4.9.*, published as a source archive only (pure Python): build it.
python3 -m pip wheel --quiet --no-deps --wheel-dir "$dest" antlr4-python3-runtime==4.9.3

# Ours: the benchmark imports ssl_core, ssl_data, ssl_forwards and ssl_losses only (not the
# app or ssl-callbacks, whose faiss wheel alone would pass the size limit).
for package in ssl-losses ssl-data ssl-core ssl-forwards; do
  uv build --quiet --wheel --package "$package" --out-dir "$dest"
done

size=$(du -sb "$dest" | cut -f1)
count=$(find "$dest" -name '*.whl' | wc -l)
echo "$count wheels, $((size / 1024 / 1024)) MiB in $dest (limit ${limit_mib} MiB; torch not included)"
ls -1 "$dest"
if (( size > limit_mib * 1024 * 1024 )); then
  echo "error: $dest is over ${limit_mib} MiB; the device run carries at most 64 MiB" >&2
  exit 1
fi
