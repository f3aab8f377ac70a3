#!/usr/bin/env bash
# The accuracy–diversity fronts over THREE independently trained SASRec models per dataset (seeds 0, 1, 2 of
# experiments/quality/), so that the setting chosen on validation is not an artefact of one model and one user
# sample: each checkpoint is scored once (explore.py cache), every setting is evaluated on every checkpoint
# (explore.py sweep --model seedK), and report.py --seeds chooses on the MEAN validation numbers and reports the
# mean ± std test numbers (results-seeds.md, seeds-<dataset>.csv, front-seeds-<dataset>.png).
#   experiments/diversity_tradeoff/seeds.sh [ml100k] [beauty]   # 2 cores: ml-100k ≈ 1–2 min per model, Beauty longer
#   QUALITY_OUTPUTS=/other/checkout/outputs experiments/diversity_tradeoff/seeds.sh   # checkpoints trained elsewhere
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
here=experiments/diversity_tradeoff
work=outputs/diversity_tradeoff
mkdir -p "$work"
py=${PY:-.venv/bin/python}
# the multirun folder of experiments/quality/run.sh with seeds 0, 1, 2 (newest one)
multirun() { ls -d "${QUALITY_OUTPUTS:-outputs}"/quality-"$1"/multiruns/*/2/checkpoints/best.ckpt | sort | tail -1 | sed 's#/2/checkpoints/best.ckpt##'; }

mmr_sum="relevance=softmax aggregate=sum similarity=jaccard order=score"
ml100k=(
  --grid "mmr lambda_=0.99,0.991,0.992,0.993,0.994,0.995,0.996 $mmr_sum +candidates=30,40,50,60,70,80,100"
  --grid "mmr lambda_=0.4,0.45,0.5,0.55,0.6,0.65,0.7 aggregate=sum similarity=jaccard order=score +candidates=20,25,30,40,50"
  --grid "mmr lambda_=0.0 aggregate=sum similarity=jaccard order=score +candidates=200"
  --grid "mmr lambda_=0.3,0.5,0.7,0.8,0.9,0.95 similarity=categories +candidates=200"
  --grid "dpp temperature=0.05,0.1,0.2,0.3,0.5,1.0 similarity=categories normalize=True +candidates=200"
  --grid "dpp temperature=0.2,0.3,0.5,0.7,1.0 identity_mix=0.1 order=score +candidates=200"
  --grid "xquad lambda_=0.05,0.1,0.2,0.3,0.5 order=score +candidates=50"
)
beauty=(
  --grid "mmr lambda_=0.99,0.993,0.995,0.997,0.998 $mmr_sum +candidates=20,30,50"
  --grid "mmr lambda_=0.3,0.5,0.7 aggregate=sum similarity=jaccard order=score +candidates=20,50"
  --grid "mmr lambda_=0.0 aggregate=sum similarity=jaccard order=score +candidates=50,200"
  --grid "mmr lambda_=0.5,0.7,0.9 similarity=categories +candidates=200"
  --grid "dpp temperature=0.1,0.5 similarity=categories normalize=True +candidates=200"
  --grid "dpp temperature=0.2,0.5 identity_mix=0.1 similarity=jaccard order=score +candidates=200"
  --grid "xquad lambda_=0.05,0.2,0.5 order=score +candidates=50"
)
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(ml100k beauty)
for dataset in "${datasets[@]}"; do
  experiment=sasrec_$dataset
  runs=$(multirun $experiment)
  for seed in 0 1 2; do
    cache=$work/$dataset-seed$seed.pt
    # caches from before bound.py lack the temperature logsumexps it needs: rebuild those
    [ -f "$cache" ] && $py -c "import sys, torch; sys.exit('temperatures' not in torch.load('$cache'))" || rm -f "$cache"
    [ -f "$cache" ] || $py $here/explore.py cache "$runs/$seed/checkpoints/best.ckpt" "$cache"
    grid=$dataset[@]
    $py $here/explore.py sweep "$cache" --model seed$seed --out $here/seeds-grid-$dataset-seed$seed.csv "${!grid}"
  done
done
$py $here/report.py --seeds --csv $here/seeds-grid-*.csv --out $here

# Re-ranker or model? The same objective optimised three ways on the same caches (calibrated softmax, exact
# expected-NDCG greedy + swap local search): bound.py → bound-<dataset>.md / .csv / -calibration.csv.
bound_ml100k=(--n 40 --lambdas 0.99,0.991,0.992,0.993 --lambdas-calibrated 0.99,0.991,0.992,0.993
  --mus 0.06,0.08,0.1,0.12,0.14 --swaps 3)
bound_beauty=(--n 50 --lambdas 0.995,0.997,0.998,0.999 --lambdas-calibrated 0.998,0.9985,0.999,0.9993,0.9995,0.9997
  --mus 0.01,0.013,0.016,0.02,0.025 --swaps 3)
for dataset in "${datasets[@]}"; do
  options=bound_$dataset[@]
  $py $here/bound.py $work/$dataset-seed{0,1,2}.pt --out $here/bound-$dataset "${!options}"
done
