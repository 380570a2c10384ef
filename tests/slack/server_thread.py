"""The bot's waitress server on a background thread that stops cleanly, for tests."""

from __future__ import annotations

import contextlib
import threading

from waitress.server import BaseWSGIServer, MultiSocketServer

from tests.timeouts import seconds


class ServerThread:
    """A waitress server on a background thread that stops cleanly."""

    def __init__(self, server: BaseWSGIServer | MultiSocketServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, name="cyto-http", daemon=True)
        self.thread.start()
        self._stopped = False

    def stop(self, timeout: float | None = None) -> None:
        # Once only: a second pull_trigger would write to a closed (or by then reused) descriptor.
        if self._stopped:
            return
        self._stopped = True
        # Closing from inside the server's own loop empties its socket map, which ends the loop;
        # closing from another thread would pull the sockets from under a running select().
        # OSError: the trigger is already closed, because the server closed itself and its loop ended.
        with contextlib.suppress(OSError):
            self.server.trigger.pull_trigger(self.server.close)
        self.thread.join(seconds(5) if timeout is None else timeout)
        self.server.task_dispatcher.shutdown()
