#!/bin/sh
# Reward-model demonstration with the embedded model (bench/RESULTS.md, "Reward model").
# Problems: generated level-1 arithmetic (reasoning-gym basic_arithmetic); the held-out file
# shares no question with the training file. Every step resumes when rerun.
# Usage: sh bench/rm_demo/run.sh [OUT_DIR]   (default runs/rmdemo)
set -eu
MF=${MF:-.venv/bin/mathforge}
P=bench/rm_demo
D=${1:-runs/rmdemo}
SAMPLE="--n 6 --max-new-tokens 192 --dtype float32"
$MF rm data --problems $P/heldout_problems.jsonl $SAMPLE --chunk-size 8 --seed 1 --out $D/heldout.jsonl
$MF rm data --problems $P/train_problems.jsonl --limit 160 $SAMPLE --chunk-size 16 --seed 0 \
  --out $D/train.jsonl
$MF rm train --data $D/train.jsonl --eval-data $D/heldout.jsonl --out $D/rm --max-length 384 \
  --epochs 2 --lr 5e-5 --grad-accum 4 --train-layers 8 --save-steps 10 --eval-steps 1000 --logging-steps 5
$MF rm score --rm $D/rm $D/heldout.samples/samples.jsonl -o $D/heldout.scored.jsonl
