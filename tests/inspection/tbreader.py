"""Reading run folders back the way TensorBoard does: its event reader and its hparams plugin's HTTP handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

ALL = {"scalars": 0, "tensors": 0, "images": 0}  # keep every event, no sampling


def events(run_dir: Path) -> EventAccumulator:
    """Everything in a run folder's TensorBoard events (all files of the run, read in order)."""
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance=ALL)
    accumulator.Reload()
    return accumulator


def hparams_api(logdir: Path, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the hparams plugin's ``route`` (``/experiment``, ``/session_groups``) of a TensorBoard
    serving ``logdir``, in process: what the HPARAMS tab receives."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, data_provider=provider)
    app = hparams_plugin.HParamsPlugin(context).get_plugin_apps()[route]
    response = Client(app, Response).post("/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))
