#!/usr/bin/env bash
# bertkit's main job, end to end, on the bundled model (all-MiniLM-L6-v2) and the small
# example data shipped inside bertkit (`bertkit examples DIR` copies it out): tokenize,
# embed, fine-tune, evaluate, predict. The classifier learns product reviews (positive,
# negative, mixed: 360 training / 120 test), a task hard enough to show real confusions.
# A few minutes on 2 CPU cores; everything is written under $OUT (default runs/quickstart).
#
#   bash examples/quickstart.sh [OUT]
set -euo pipefail

OUT=${1:-runs/quickstart}
DATA="$OUT/data"
mkdir -p "$OUT"
bertkit examples "$DATA" --overwrite >/dev/null 2>&1
start=$(date +%s)
step() { printf '\n== %s\n' "$*"; }

step "1/5 tokenize: how the model sees a sentence"
bertkit tokenize "The striker scored twice in the derby."

step "2/5 embed: one 384-d vector per test sentence"
bertkit embed --input "$DATA/topics_test.csv" --text-column text --output "$OUT/test_embeddings.npy" --overwrite
python -c "import numpy as np; v = np.load('$OUT/test_embeddings.npy'); print('embeddings', v.shape, '->', '$OUT/test_embeddings.npy')"

step "3/5 train: fine-tune a review classifier (90/10 train/validation split)"
bertkit train --train "$DATA/reviews_train.csv" --text-column text --label-column label \
    --output "$OUT/model" --overwrite

step "4/5 evaluate on the held-out test file"
bertkit evaluate --model "$OUT/model" --input "$DATA/reviews_test.csv" \
    --png "$OUT/test_confusion_matrix.png"

step "5/5 predict: one review, then a whole file"
bertkit predict --model "$OUT/model" "The screen is bright and sharp, but the battery dies by noon."
bertkit predict --model "$OUT/model" --input "$DATA/reviews_test.csv" --output "$OUT/predictions.csv" --overwrite

step "done in $(( $(date +%s) - start )) s; files written"
cat <<EOF
model (transformers-loadable)  $OUT/model
training stats                 $OUT/model/stats.csv
learning curves                $OUT/model/learning_curves.png
validation confusion matrix    $OUT/model/confusion_matrix.png
test confusion matrix          $OUT/test_confusion_matrix.png
test embeddings                $OUT/test_embeddings.npy
predictions                    $OUT/predictions.csv
EOF
