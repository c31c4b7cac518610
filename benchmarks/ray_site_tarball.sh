#!/bin/bash
# Ray for a GPU host that cannot download it (issue 19): the wheel (79 MB) is over what one
# device call carries (64 MiB with the tree), so unpack it with the packages that host lacks
# (jsonschema and its needs), drop what the tuner never imports (Java jars, RLlib, Data, Serve,
# Train, Tune, LLM) and pack it as xz: about 30 MB.
#   benchmarks/ray_site_tarball.sh OUT.tar.xz [RAY_VERSION] [PYTHON_VERSION]
# There:  mkdir -p /tmp/site && tar xJf OUT.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site
set -euo pipefail
out=$(realpath -m "$1"); ray=${2:-2.60.0}; py=${3:-3.12}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$tmp/whl" "ray==$ray" jsonschema referencing \
  jsonschema-specifications rpds-py
mkdir "$tmp/site"
for w in "$tmp"/whl/*.whl; do unzip -qo "$w" -d "$tmp/site"; done
rm -rf "$tmp"/site/ray/{jars,rllib,data,serve,train,tune,llm}
tar cf - -C "$tmp/site" . | xz -T0 -6 > "$out.tmp" && mv "$out.tmp" "$out"
ls -l "$out"
