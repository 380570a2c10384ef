"""Poll leases: several pollers (bot replicas, a CLI's `status`, a notebook's `wait`) on one ledger
split each poll cycle's per-run work instead of all doing all of it. A poller leases the unfinished
runs it will work on for one cycle and releases them at its end; a run leased by another poller is
skipped. A lease held by a process that died is free again at once on its own host, and after
`expires_at` from anywhere else, so a run whose poller died mid-cycle is picked up by the next one.

Leases only divide the work. Correctness stays with the compare-and-set writes and the claims (a
lease that expired under a hung poller can at worst make two pollers race, which the guards settle).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot import claims
from bot.ledger.connection import LedgerConnection


class LeaseWrites(LedgerConnection):
    def lease_runs(self, run_ids: Sequence[str], holder: str, now: float, seconds: float) -> list[str]:
        """Lease, for `seconds`, those of `run_ids` that no other live poller holds; returns them (in
        the order given). `holder` is a claim token (bot/claims.py) of this poll cycle."""
        if not run_ids:
            return []
        with self.transaction() as conn:
            held = {r[0]: (r[1], r[2]) for r in conn.execute(
                f"SELECT run_id, holder, expires_at FROM run_leases WHERE run_id IN ({','.join('?' * len(run_ids))})",
                list(run_ids))}
            free = [r for r in run_ids if r not in held or held[r][0] == holder or held[r][1] <= now
                    or claims.dead_here(held[r][0])]
            conn.executemany("""INSERT INTO run_leases (run_id, holder, expires_at) VALUES (?, ?, ?)
                                ON CONFLICT (run_id) DO UPDATE SET holder = excluded.holder,
                                    expires_at = excluded.expires_at""",
                             [(r, holder, now + seconds) for r in free])
        return free

    def release_runs(self, run_ids: Sequence[str], holder: str) -> None:
        """End this holder's leases on `run_ids` (the cycle is over)."""
        if not run_ids:
            return
        with self.transaction() as conn:
            conn.executemany("DELETE FROM run_leases WHERE run_id = ? AND holder = ?", [(r, holder) for r in run_ids])
