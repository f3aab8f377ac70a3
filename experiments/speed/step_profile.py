"""Where a training step's time goes: one composed config, real batches, the step timed by parts.

    .venv/bin/python experiments/speed/step_profile.py experiment=sasrec_beauty [trainer.precision=bf16-mixed]
"""

from __future__ import annotations

import sys
import time

import torch
from hydra import compose, initialize_config_dir

from divrec import names
from divrec.configs import config_dir
from divrec.pipeline import build


def main(overrides: list[str]) -> None:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "metrics.diversity=false", "paths.output_dir=/tmp/step_profile"])
    dm, module = build(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    bf16 = cfg.trainer.precision == "bf16-mixed"
    module.train()
    t_fwd = t_bwd = t_opt = t_data = 0.0
    n = positions = 0
    t0 = time.perf_counter()
    for batch in loader:
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.task.loss(module.backbone, batch)[names.LOSS]
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        t_data += t1 - t0
        t_fwd, t_bwd, t_opt = t_fwd + t2 - t1, t_bwd + t3 - t2, t_opt + t4 - t3
        n += 1
        positions += int((batch[names.ITEMS] > 0).sum())
        t0 = time.perf_counter()
    total = t_data + t_fwd + t_bwd + t_opt
    print(f"steps {n} positions {positions} total {total:.2f}s data {t_data:.2f} fwd {t_fwd:.2f} "
          f"bwd {t_bwd:.2f} opt {t_opt:.2f} threads {torch.get_num_threads()}")




def eval_profile(overrides: list[str]) -> None:
    """Validation pass with the plain path's parts timed: query, scores, mask, ranks, top-K."""
    from divrec.metrics import mask_scores, target_ranks, top_k
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "metrics.diversity=false", "paths.output_dir=/tmp/step_profile"])
    dm, module = build(cfg)
    dm.setup("fit")
    module.eval()
    parts = dict.fromkeys(["data", "query", "scores", "mask", "ranks", "topk"], 0.0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in dm.val_dataloader():
            t = [time.perf_counter()]
            q = module.task.query(module.backbone, batch[names.HISTORY], batch.get(names.USER_INDEX))
            t.append(time.perf_counter())
            s = module.backbone.score(q)
            t.append(time.perf_counter())
            m = mask_scores(s, batch[names.SEEN], batch[names.TARGET], inplace=True)
            t.append(time.perf_counter())
            target_ranks(m, batch[names.TARGET])
            t.append(time.perf_counter())
            top_k(m, 20)
            t.append(time.perf_counter())
            parts["data"] += t[0] - t0
            for name, a, b in zip(list(parts)[1:], t, t[1:], strict=False):
                parts[name] += b - a
            t0 = time.perf_counter()
    print("eval", {k: round(v, 3) for k, v in parts.items()}, "total", round(sum(parts.values()), 3))


if __name__ == "__main__":
    (eval_profile if sys.argv[1:2] == ["eval"] else main)([a for a in sys.argv[1:] if a != "eval"])
