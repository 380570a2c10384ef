"""Where cyto keeps things when the environment does not say: the same places from any directory.

- The store (`CYTO_STORE`) defaults to `~/cyto-data`: a visible folder the lab drops batches into.
- The run database (`CYTO_DB`) and the local job spool (`CYTO_LOCAL_SPOOL`) default to the user's
  state directory (platformdirs: `$XDG_STATE_HOME/cyto-bot`, else `~/.local/state/cyto-bot` on
  Linux, `~/Library/Application Support/cyto-bot` on macOS), one sub-folder per executor and store:

      ~/.local/state/cyto-bot/local@home-you-cyto-data/runs.sqlite
      ~/.local/state/cyto-bot/local@home-you-cyto-data/local-jobs/

  So the CLI, a bot and a notebook run by one user against one store share one run history,
  wherever they are started; a different store or executor keeps its own (a run submitted to AWS
  Batch is never polled by a session that only knows local processes, and so never taken as lost).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import platformdirs

APP_NAME = "cyto-bot"
DEFAULT_STORE = "~/cyto-data"
DB_FILE = "runs.sqlite"
SPOOL_FOLDER = "local-jobs"
_MAX_SLUG = 80


def default_store() -> str:
    return str(Path(DEFAULT_STORE).expanduser())


def state_root() -> Path:
    return platformdirs.user_state_path(APP_NAME)


def state_dir(store: str, executor: str) -> Path:
    """The folder holding the run database and spool for this store and executor."""
    return state_root() / f"{executor}@{store_slug(store)}"


def default_db(store: str, executor: str) -> str:
    return str(state_dir(store, executor) / DB_FILE)


def default_spool(store: str, executor: str) -> str:
    return str(state_dir(store, executor) / SPOOL_FOLDER)


def store_slug(store: str) -> str:
    """A readable folder name for a store URI: `s3://lab/cyto` -> `s3-lab-cyto`,
    `/home/you/cyto-data` -> `home-you-cyto-data`; long names end in a short hash to stay unique."""
    if store.startswith("s3://"):
        text = "s3-" + store[5:].strip("/")
    else:
        text = str(Path(store.removeprefix("file://")).expanduser().resolve()).strip("/\\")
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-") or "root"
    if len(slug) > _MAX_SLUG:
        digest = hashlib.sha256(store.encode()).hexdigest()[:8]
        slug = f"{slug[: _MAX_SLUG - 9]}-{digest}"
    return slug
