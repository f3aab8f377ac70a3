"""Where the seconds before the first training step go: `divrec train` run N times, its phases timed from inside.

    export DIVREC_DATA_MIRROR=/work/shared/data
    flock /tmp/divrec-timing.lock .venv/bin/python experiments/speed/startup.py -n 3 trainer.max_epochs=2
    ... startup.py -n 5 --first-step     # each run ends after its first training step (start-up only)

Each run is a fresh process that imports ``divrec.cli`` and calls ``main()`` with ``train <overrides>``, as the
``divrec`` entry point does; the only difference is that this child wraps a few functions (no divrec code is
changed) to note, at the end of each phase, the wall seconds since its process started (``/proc``, the clock of
``timeline.jsonl``) and the CPU seconds it has used (``time.process_time``: all threads; steadier than the wall
clock on a shared machine):

- ``import cli``: interpreter start-up + ``import divrec.cli``
- ``composed``: Hydra has composed the config (its run callbacks start: ``RunGuard.on_run_start``)
- ``import lightning``: that callback returned; it imports ``divrec.lit.strategies``, i.e. torch + Lightning
- ``job start``: Hydra set up the job (logging, run folder) and called the train runner
- ``import pipeline``: the runner's ``from divrec.pipeline import train`` (the models, metrics, objectives, ...)
- ``trainer``: ``make_trainer`` returned (check_config, seeding, callbacks and loggers instantiated)
- ``data``: the datamodule's ``load()`` returned (the dataset cache read); ``model``: ``build_module`` returned
- ``fit start``, ``1st step``: Lightning's ``on_fit_start``; the first training batch ended
- ``epoch k``: the validation of epoch k ended (wall: ``process_elapsed_s`` of timeline.jsonl row k)
- ``final val`` / ``test``: ``trainer.validate`` / ``trainer.test`` of the best checkpoint returned (the seconds
  of the inspection callbacks inside the final validation are printed apart); ``finish``: ``train()`` returned;
  ``main returned``: ``divrec.cli.main()`` returned (Hydra closed the job)
- ``exit``: the process ended (the parent's clock and the child's rusage)

Besides, ``python -X importtime -c "import divrec.cli"`` N times (median of its cumulative microseconds) and the
slowest modules of the last of those runs; and per run the goal figure: wall seconds until val NDCG@10 >= 0.06.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PHASES_ENV = "DIVREC_STARTUP_PHASES"  # the child writes its phase times (JSON) to this file
STOP_ENV = "DIVREC_STARTUP_STOP"  # set: the child ends right after its first training step (--first-step)
ORDER = ("python", "import cli", "composed", "import lightning", "job start", "import pipeline", "trainer", "data",
         "model", "fit start", "1st step")
TAIL = ("final val", "test", "finish", "main returned", "exit")
SPANS = ("attention maps", "projector")  # seconds spent inside these callbacks (summed over calls)
GOAL = 0.06  # val NDCG@10 of the performance goal


def elapsed() -> float:
    """Seconds since this process started (the same clock as divrec.callbacks.process_elapsed)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------- child process
class Probe:
    """Phase ends (wall and CPU seconds), seconds spent inside wrapped callbacks, and a few facts."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.spans: dict[str, float] = {}
        self.facts: dict[str, Any] = {}

    def mark(self, label: str) -> None:
        """Note the end of phase ``label`` (its first end only)."""
        if label not in self.wall:
            self.wall[label], self.cpu[label] = elapsed(), time.process_time()

    def after(self, owner: Any, attr: str, label: str) -> None:
        """Wrap ``owner.attr`` so that its first return marks ``label``."""
        original = getattr(owner, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.mark(label)
            return result

        setattr(owner, attr, wrapped)

    def spent(self, owner: Any, attr: str, label: str) -> None:
        """Wrap ``owner.attr`` so that ``spans[label]`` sums the wall seconds spent in it."""
        original = getattr(owner, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spans[label] = self.spans.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, attr, wrapped)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"wall": self.wall, "cpu": self.cpu, "spans": self.spans, "facts": self.facts}))


def _callback(probe: Probe) -> Any:
    """A Lightning callback marking fit start, the first step and the end of each validation during fit."""
    import pytorch_lightning as pl
    from pytorch_lightning.trainer.states import TrainerFn

    class Phases(pl.Callback):
        def on_fit_start(self, *args: Any) -> None:
            probe.mark("fit start")

        def on_train_batch_end(self, *args: Any) -> None:
            if "1st step" not in probe.wall:
                probe.mark("1st step")
                probe.facts["pandas by the 1st step"] = "pandas" in sys.modules
                if os.environ.get(STOP_ENV):
                    probe.dump(Path(os.environ[PHASES_ENV]))
                    os._exit(0)

        def on_validation_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
                probe.mark(f"epoch {trainer.current_epoch + 1}")

    return Phases()


def _instrument(probe: Probe) -> Callable[[Any], object]:
    import divrec.cli as cli
    from divrec.sweep.guard import RunGuard

    train_runner, on_run_start = cli.RUNNERS["train"], RunGuard.on_run_start

    def guard_start(*args: Any, **kwargs: Any) -> None:
        probe.mark("composed")
        on_run_start(*args, **kwargs)
        probe.mark("import lightning")

    RunGuard.on_run_start = guard_start  # type: ignore[method-assign]

    def runner(cfg: Any) -> object:
        probe.mark("job start")
        import pytorch_lightning as pl

        import divrec.pipeline as pipeline
        from divrec.data.datamodule import SeqDataModule
        from divrec.inspection.callbacks import AttentionMaps, EmbeddingProjector

        probe.mark("import pipeline")
        make_trainer = pipeline.make_trainer

        def trainer_with_probe(*args: Any, **kwargs: Any) -> Any:
            trainer = make_trainer(*args, **kwargs)
            trainer.callbacks.append(_callback(probe))
            probe.mark("trainer")
            return trainer

        pipeline.make_trainer = trainer_with_probe
        probe.after(SeqDataModule, "load", "data")
        probe.after(pipeline, "build_module", "model")
        probe.after(pl.Trainer, "validate", "final val")
        probe.after(pl.Trainer, "test", "test")
        probe.spent(AttentionMaps, "on_validation_end", "attention maps")
        probe.spent(EmbeddingProjector, "on_validation_end", "projector")
        result = train_runner(cfg)
        probe.mark("finish")
        return result

    return runner


def child(overrides: list[str]) -> None:
    probe = Probe()
    probe.mark("python")
    import divrec.cli as cli

    probe.mark("import cli")
    cli.RUNNERS["train"] = _instrument(probe)
    sys.argv = ["divrec", "train", *overrides]
    try:
        cli.main()
        probe.mark("main returned")  # Hydra's end of the job; what follows is the interpreter's exit
    finally:
        probe.dump(Path(os.environ[PHASES_ENV]))


# ---------------------------------------------------------------------------------------------- parent process
def import_times(n: int) -> tuple[list[float], list[tuple[float, str]]]:
    """Seconds of ``import divrec.cli`` per run (importtime's cumulative figure) and the last run's top modules."""
    totals, top = [], []
    for _ in range(n):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import divrec.cli"],
                              capture_output=True, text=True, check=True)
        rows = []
        for line in done.stderr.splitlines():
            parts = line.removeprefix("import time:").split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
        totals.append(next(s for s, name in rows if name.strip() == "divrec.cli"))
        top = sorted(rows, reverse=True)[:25]
    return totals, top


def train_run(overrides: list[str], run_dir: Path, first_step: bool = False) -> dict[str, Any]:
    """One instrumented run: its phase ends (wall, cpu), spans, facts and val NDCG@10 per epoch."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        phases_file = Path(f.name)
    env = os.environ | {PHASES_ENV: str(phases_file)} | ({STOP_ENV: "1"} if first_step else {})
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", *overrides, f"hydra.run.dir={run_dir}"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    run = json.loads(phases_file.read_text())
    phases_file.unlink()
    run["wall"]["exit"] = wall  # the child's process starts when the parent spawns it
    run["cpu"]["exit"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    run["ndcg"] = {}
    timeline = run_dir / "timeline.jsonl"
    for row in map(json.loads, timeline.read_text().splitlines() if timeline.is_file() else []):
        run["wall"][f"epoch {row['epoch'] + 1}"] = row["process_elapsed_s"]  # the official clock of the goal
        run["ndcg"][row["epoch"] + 1] = row.get("val/ndcg@10", float("nan"))
    return run


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per phase, each run's wall end, the median wall end and step, the median CPU end and step."""
    epochs = sorted((k for k in runs[0]["wall"] if k.startswith("epoch ")), key=lambda k: int(k.split()[1]))
    keys = [k for k in (*ORDER, *epochs, *TAIL) if all(k in r["wall"] for r in runs)]
    head = " | ".join(f"run {i + 1}" for i in range(len(runs)))
    lines = [f"| phase ends at (s since process start) | {head} | median wall | step | median CPU | step |",
             "|---" * (len(runs) + 5) + "|"]
    wall_before = cpu_before = 0.0
    for key in keys:
        walls = [r["wall"][key] for r in runs]
        wall = statistics.median(walls)
        cpus = [r["cpu"][key] for r in runs if key in r["cpu"]]
        cpu = statistics.median(cpus) if len(cpus) == len(runs) else None
        cpu_cells = f"{cpu:.2f} | {cpu - cpu_before:+.2f}" if cpu is not None else "– | –"
        lines.append(f"| {key} | " + " | ".join(f"{v:.2f}" for v in walls)
                     + f" | **{wall:.2f}** | {wall - wall_before:+.2f} | {cpu_cells} |")
        wall_before, cpu_before = wall, cpu if cpu is not None else cpu_before
    return "\n".join(lines)


def goal_seconds(run: dict[str, Any]) -> float:
    """Wall seconds from process start to the first validation with NDCG@10 >= GOAL (NaN if never)."""
    hits = [epoch for epoch, ndcg in sorted(run["ndcg"].items()) if ndcg >= GOAL]
    return run["wall"][f"epoch {hits[0]}"] if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--root", default="/tmp/su", help="run folders <root>/<stamp>-<i>")
    parser.add_argument("--first-step", action="store_true", help="end each run after its first training step")
    parser.add_argument("overrides", nargs="*", default=["trainer.max_epochs=2"])
    args = parser.parse_args()
    totals, top = import_times(args.n)
    print(f"import divrec.cli: {' '.join(f'{t:.2f}' for t in totals)} s; median {statistics.median(totals):.2f} s")
    print("slowest modules (cumulative s, last run):")
    for seconds, name in top:
        print(f"  {seconds:6.3f} {name}")
    stamp = time.strftime("%H%M%S")
    runs = [train_run(args.overrides, Path(args.root) / f"{stamp}-{i}", args.first_step) for i in range(args.n)]
    print(table(runs))
    for label in SPANS:
        values = [r["spans"].get(label, 0.0) for r in runs]
        print(f"inside {label}: {' '.join(f'{v:.2f}' for v in values)} s; median {statistics.median(values):.2f} s")
    print("pandas imported by the 1st step:", [r["facts"].get("pandas by the 1st step") for r in runs])
    print("val ndcg@10 per epoch:", [{e: round(v, 4) for e, v in r["ndcg"].items()} for r in runs])
    if args.first_step:
        return
    goals = [goal_seconds(r) for r in runs]
    median = statistics.median(goals)
    print(f"wall s to val ndcg@10 >= {GOAL}: {' '.join(f'{g:.2f}' for g in goals)}; median {median:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
