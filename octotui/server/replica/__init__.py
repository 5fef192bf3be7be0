"""Several server replicas on one PostgreSQL (``--database``): each serves every route from its memory,
kept in step with what the others write.

- **Changes.** Each store transaction of a replica writes the records it changed (kind, key) to
  ``replica_changes`` and NOTIFYs ``octotui_changes`` (storebase.py ``note``), in that transaction.
  The others re-read those records from their tables and take them into memory (:func:`apply`): a
  command queued through one replica wakes the long poll of its agent on another. The table is the
  truth, NOTIFY only the wake-up: a dedicated connection LISTENs (reconnected, and everything since
  the last change read re-read after a reconnect), and the table is read every :data:`POLL` seconds
  anyway, so a lost notification delays a change by at most that. ``OCTOTUI_REPLICA_LISTEN=0`` turns
  LISTEN off (behind a pooler in transaction mode, which cannot LISTEN): changes then come by the poll.
  A record this replica changed and has not written yet keeps its own change (written later, it wins
  in the table, and the others then take it). Kinds: providers, agents (a deletion recomputes the
  monitors' assignments), tests with their containers, commands, operators' tokens, monitors, the
  monitors a test names (``test_monitors``: a test launched through one replica starts its monitors on
  agents heartbeating another) and alarms (raised or ended where the samples arrived, shown everywhere).
- **Live data** never goes to the database per heartbeat: each replica publishes what came through it
  (agents' last heartbeat, latest host sample, containers' live figures, the per-label rows that
  changed, monitors' samples and states) in ONE statement per :data:`LIVE_EVERY` seconds (an UNLOGGED
  table, one row per replica and slot) and takes the others' (:mod:`.live`): the lease holder's held
  criteria and series see every label, and any replica serves labels and monitors' windows. Alarms are
  judged once, by the replica the samples reached (it has them in order; the others only fill their
  windows), so a critical alarm stops a test once.
- **Strays.** A container reported here that this replica has no record of is read from the tables
  on demand (its test) before it is called a stray (:mod:`.strays`): another replica's launch is taken
  into memory, a true stray stopped at its next report.
- **Background duties** (the test state machine, lost containers, series sampling, retirements,
  JTL retention, forgetting idempotency keys, pruning ``replica_changes``) run on the replica that
  holds a session advisory lock on a connection of its own (:data:`LEASE`): a replica killed loses its
  connection, PostgreSQL releases the lock, and another takes it within :data:`LEASE_EVERY` seconds.

Modules: :mod:`.reader` (the replicas' tables, the connection that reads them), :mod:`.apply` (the
others' changes into memory), :mod:`.live` (the live exchange), :mod:`.lease` (the lease and the launch
lock), :mod:`.strays` (containers read on demand), :mod:`.core` (the :class:`Replica`, its loops).

The change feed (``GET /changes``) stays per replica (its own epoch): changes taken from the others
are touched in it like local ones, so a dashboard that switches replica pays one full resync.
"""

from octotui.server.replica.apply import apply
from octotui.server.replica.core import Replica, start
from octotui.server.replica.lease import LAUNCH_LOCK, LEASE
from octotui.server.replica.reader import CHANGES_KEPT, LIVE_EVERY, POLL, SLOTS, Delta, Reader

__all__ = ["CHANGES_KEPT", "LAUNCH_LOCK", "LEASE", "LIVE_EVERY", "POLL", "SLOTS", "Delta", "Reader", "Replica",
           "apply", "start"]  # fmt: skip
