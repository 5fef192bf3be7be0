"""Settings of one control server process, resolved once by the CLI and handed to the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Everything :func:`octotui.server.app.create_app` needs; immutable once the server runs."""

    data_dir: Path
    #: A ``postgresql://user:password@host:port/db`` URL: the durable state there instead of the SQLite
    #: file ``db_path`` (the data dir still holds the files: JTLs, uploaded files, keys).
    database: str | None = None
    host: str = "127.0.0.1"
    port: int = 8427
    #: The URL agents and dashboards reach this server at when it is not the one it listens on (a
    #: replica behind a load balancer: the balancer's URL). /info and the providers' install lines
    #: give it; None: the URL it listens on.
    public_url: str | None = None
    admin_token: str | None = None
    heartbeat_interval: float = 5.0
    late_after: float = 15.0
    offline_after: float = 30.0
    #: A test whose live containers were all lost with their offline agents stays open this long
    #: after its planned end (after the loss, without a planned duration), so that a machine back
    #: from an outage hands in what its containers did.
    return_wait: float = 120.0
    #: Each long poll waits a random time in this range so that polls never expire together.
    poll_timeout_min: float = 20.0
    poll_timeout_max: float = 30.0
    #: An unacknowledged command is handed out again after this long (agents dedupe by id).
    redeliver_after: float = 15.0
    default_image: str = "justb4/jmeter:5.5"
    #: Largest JMX plan accepted; a request body may be larger (JSON escaping, other fields).
    max_plan_bytes: int = 4 * MIB
    max_body_bytes: int = 9 * MIB
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Host samples kept per agent.
    samples_window: int = 600
    #: A test's series: points kept at most (the whole test, older points merged), and the seconds
    #: of newest points kept as they came (one a second).
    series_max_points: int = 5000
    series_fine_span: float = 3600.0
    #: Placement budget of one JMeter container: memory and CPU it is assumed to need.
    container_memory: int = 512 * MIB
    container_cpu: float = 0.1
    #: First JMeter shutdown port handed to containers; each live container gets its own.
    shutdown_port_base: int = 4445
    #: Seconds an agent has to confirm a stopped container ended (JMeter's stop grace, 20 s, plus
    #: a margin) before the test's reason names the containers that did not.
    stop_deadline: float = 30.0
    #: Seconds an ``Idempotency-Key`` of a launch is kept (a retry after that starts a new test).
    idempotency_ttl: float = 24 * 3600.0
    #: Seconds between checkpoints that fold the store's write-ahead log back and empty it.
    checkpoint_interval: float = 60.0
    #: How often live state (container and test changes) is written to the store.
    flush_interval: float = 0.5
    #: How often the changed per-label figures of running containers are stored (those of ended
    #: containers at the next flush): what a server killed mid-test may have to wait for again.
    labels_save_interval: float = 30.0
    #: Largest JTL an agent may upload (gzip-compressed, as sent).
    max_jtl_bytes: int = 4 * 1024 * MIB
    #: Days the uploaded JTLs of an ended test are kept (0: for ever), checked every ``jtl_prune_interval`` s.
    jtl_retention_days: float = 30.0
    jtl_prune_interval: float = 3600.0
    #: Largest file an operator may upload (``POST /files``, streamed to disk).
    max_file_bytes: int = 1024 * MIB
    #: The key monitors' credentials are encrypted with (``secrets.py``): ``--secrets-key-file``, one
    #: file shared by every replica on one PostgreSQL; None: ``DATA_DIR/monitors.key``.
    secrets_key_file: Path | None = None

    @property
    def secrets_key_path(self) -> Path:
        """The secrets key file this server uses."""
        return self.secrets_key_file or self.data_dir / "monitors.key"

    @property
    def results_dir(self) -> Path:
        """Where uploaded JTLs are kept: ``results/<test id>/<container id>.jtl.gz``."""
        return self.data_dir / "results"

    @property
    def files_dir(self) -> Path:
        """Where uploaded test files are kept: ``files/<file id>``."""
        return self.data_dir / "files"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def db_path(self) -> Path:
        """The SQLite file (used when ``database`` is not given)."""
        return self.data_dir / "octotui.db"
