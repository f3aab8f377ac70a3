#!/usr/bin/env bash
# Accuracy–diversity fronts of one trained SASRec per dataset (the seed-0 checkpoints of experiments/quality/) under
# every re-ranker, without retraining; settings chosen on validation, reported on test.
#   experiments/diversity_tradeoff/run.sh   # 2 cores: ml-100k ≈ 10 min, Beauty ≈ 1–2 min per setting (explore.py)
# The same question over three trained models per dataset (choice on the mean validation numbers): seeds.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
here=experiments/diversity_tradeoff
work=outputs/diversity_tradeoff
mkdir -p "$work"
py=.venv/bin/python
ckpt() { ls -d outputs/quality-"$1"/multiruns/*/0/checkpoints/best.ckpt | sort | tail -1; }
for experiment in sasrec_ml100k sasrec_beauty; do
  [ -f "$(ckpt $experiment)" ] || { echo "no checkpoint for $experiment: run experiments/quality/run.sh first" >&2; exit 1; }
done

# 1. Classic MMR (category cosine, λ) and DPP (temperature) over the top 200, through `divrec eval -m`.
folders=()
for experiment in sasrec_ml100k sasrec_beauty; do
  common=(ckpt_path="$(ckpt $experiment)" logger=none callbacks.progress_bar.refresh_rate=0)
  for sweep in "rerank=none" \
      "rerank=mmr rerank.lambda_=0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1.0" \
      "rerank=dpp rerank.temperature=0.02,0.05,0.1,0.2,0.3,0.5,1.0,2.0"; do
    name=tradeoff-$experiment-${sweep%% *}; name=${name//=/-}
    # shellcheck disable=SC2086
    .venv/bin/divrec eval -m ${common[@]} $sweep task_name=$name hydra.sweep.dir=outputs/$name
    folders+=("outputs/$name")
  done
done

# 2. The newer options, on candidates scored once (explore.py cache → sweep; same modules and metrics as eval):
#    MMR with the summed Jaccard penalty (greedy ILD) and the model's probabilities as relevance, smaller N,
#    chosen items re-sorted by score; xQuAD; DPP with identity_mix.
mmr_sum="relevance=softmax aggregate=sum similarity=jaccard order=score"
$py $here/explore.py cache "$(ckpt sasrec_ml100k)" $work/ml100k.pt
$py $here/explore.py sweep $work/ml100k.pt --out $here/grid-ml100k.csv \
  --grid "mmr lambda_=0.9,0.95,0.98,0.99,0.995 $mmr_sum +candidates=50,200" \
  --grid "mmr lambda_=0.991,0.993 $mmr_sum +candidates=30,50,100" \
  --grid "mmr lambda_=0.992,0.994 $mmr_sum +candidates=40,50,60" \
  --grid "mmr lambda_=0.993 $mmr_sum +candidates=40,60" \
  --grid "mmr lambda_=0.5,0.6,0.7 aggregate=sum similarity=jaccard order=score +candidates=20,50" \
  --grid "mmr lambda_=0.5,0.6 aggregate=sum similarity=jaccard order=score +candidates=30,40" \
  --grid "dpp temperature=0.2,0.5,1.0 identity_mix=0.1 order=score +candidates=200" \
  --grid "xquad lambda_=0.05,0.1,0.2,0.5 order=score +candidates=50"
$py $here/explore.py cache "$(ckpt sasrec_beauty)" $work/beauty.pt
$py $here/explore.py sweep $work/beauty.pt --out $here/grid-beauty.csv \
  --grid "mmr lambda_=0.99,0.995,0.998 $mmr_sum +candidates=50" \
  --grid "mmr lambda_=0.99,0.995,0.997 $mmr_sum +candidates=20,30" \
  --grid "mmr lambda_=0.5,0.7 aggregate=sum similarity=jaccard order=score +candidates=20,50" \
  --grid "xquad lambda_=0.05,0.2 order=score +candidates=50" \
  --grid "dpp temperature=0.5 identity_mix=0.1 similarity=jaccard order=score +candidates=200"

# 3. The validation-chosen settings once more through the full pipeline (the check that explore.py = divrec eval).
.venv/bin/divrec eval ckpt_path="$(ckpt sasrec_ml100k)" rerank=mmr rerank.lambda_=0.992 rerank.relevance=softmax \
  rerank.aggregate=sum rerank.similarity=jaccard rerank.order=score metrics.rerank_candidates=60 logger=none \
  task_name=tradeoff-chosen-ml100k hydra.run.dir=outputs/tradeoff-chosen-ml100k
.venv/bin/divrec eval ckpt_path="$(ckpt sasrec_beauty)" rerank=mmr rerank.lambda_=0.997 rerank.relevance=softmax \
  rerank.aggregate=sum rerank.similarity=jaccard rerank.order=score metrics.rerank_candidates=30 logger=none \
  task_name=tradeoff-chosen-beauty hydra.run.dir=outputs/tradeoff-chosen-beauty
$py $here/report.py --csv $here/grid-*.csv --runs "${folders[@]}" --out $here
