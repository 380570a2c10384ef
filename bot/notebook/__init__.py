"""The notebook front end: ipywidgets forms on the `Cyto` API (see notebooks/README.md).

    from bot.api import Cyto
    from bot.notebook import LaunchForm, RunWatcher
    cyto = Cyto.from_env()
    LaunchForm(cyto)            # date, batch, pipeline, resources, parameters, preview, Run
    RunWatcher(cyto)            # progress, analyses by state, logs, Retry, Cancel
"""

from bot.notebook.launch import LaunchForm
from bot.notebook.watch import RunWatcher

__all__ = ["LaunchForm", "RunWatcher"]
