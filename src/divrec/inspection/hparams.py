"""Hyperparameters with final metrics, written so that TensorBoard's HPARAMS tab compares the runs of a multirun.

Each run writes the hparams plugin's session-start record (its flattened, scalar-only hyperparameters) and a
session-end record (status success) into its own event files, and logs every final metric as a scalar at the run's
last step. No per-run *experiment* record is written: TensorBoard then builds the experiment from all runs' session
records, so runs whose configs have different keys (``scheduler=none`` vs ``warmup_cosine``) all keep their columns,
and the hyperparameters that differ between runs come first. The final metrics are logged at the last step (not at
step 0, which would make TensorBoard's loader discard the earlier points of the same curves).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

HParam = bool | int | float | str
HPARAM_GROUPS = ("data", "model", "task", "optim", "scheduler", "rerank", "seed")  # what defines a result
# where things are on this machine or how fast they load, not what the run computes
MACHINE_KEYS = frozenset({"data.data_dir", "data.mirror", "data.cache_dir", "data.download", "data.num_workers"})


def flat_hparams(cfg: DictConfig) -> dict[str, HParam]:
    """The result-defining config groups flattened to ``{"model.hidden_size": 64, ...}``, scalars only: lists and
    None become strings; machine-local keys (paths, workers) and ``_partial_`` flags are left out."""
    flat: dict[str, HParam] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif prefix not in MACHINE_KEYS and not prefix.endswith("._partial_"):
            flat[prefix] = node if isinstance(node, bool | int | float | str) else str(node)

    for key in HPARAM_GROUPS:
        if key in cfg:
            node = cfg[key]
            walk(key, OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node)
    return flat


def final_metrics(metrics: Mapping[str, float], hparams: Mapping[str, HParam]) -> dict[str, float]:
    """The numeric run results to show next to the hyperparameters (everything in metrics.json but hparams)."""
    return {k: float(v) for k, v in metrics.items() if k not in hparams and isinstance(v, int | float)}


def log_hparams(logger: Logger, hparams: Mapping[str, HParam], metrics: Mapping[str, float], step: int) -> None:
    """Record ``hparams`` with any logger (TensorBoard/CSV write hparams.yaml); for TensorBoard also the hparams
    plugin's session records and each final metric as a scalar at ``step`` (the run's last)."""
    logger.log_hyperparams(dict(hparams))
    if not isinstance(logger, TensorBoardLogger):
        return
    logger.log_metrics(final_metrics(metrics, hparams), step=step)
    writer = logger.experiment._get_file_writer()  # as Lightning's own log_hyperparams does
    for summary in session_records(hparams):
        writer.add_summary(summary, step)


def session_records(hparams: Mapping[str, HParam]) -> tuple[Summary, Summary]:
    """The hparams plugin's session-start (hyperparameter values) and session-end (success) summaries."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: bool is an int subclass
            start.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return (
        _plugin_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        _plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
    )


def _plugin_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])
