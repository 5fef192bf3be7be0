"""Per-label figures of one container's JTL, cumulative, and which of them the server has not seen.

Rows are counted as JMeter's Aggregate Report counts a CSV JTL: every row is one sample under its
own label (a transaction controller's row included; JMeter writes sub-results as rows of their own
only where its version does, and 2.13 writes none: a followed redirect or the children of a
"generate parent sample" transaction are not rows).

What changed since the last heartbeat the server answered is tracked with epochs: every change is
stamped with the current epoch, :meth:`LabelTable.pending` hands out what is newer than the last
acknowledged epoch and opens a new one, and :meth:`LabelTable.acknowledge` moves the acknowledged
epoch to the one a delivered heartbeat was built at. A heartbeat that failed acknowledges nothing,
so the next one carries its labels again (with their cumulative figures, so nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from octotui.protocol import (
    MAX_ERRORS_PER_LABEL,
    MAX_LABELS,
    OTHER_ERROR,
    OTHER_LABEL,
    ErrorCount,
    LabelStats,
    rt_bucket,
)

#: Response messages (and failure messages) are cut to this many characters: an error text that
#: carries a whole response must not make each heartbeat huge.
MESSAGE_MAX = 300


class _Label:
    """The running figures of one label (mutable, one per label: cheap per sample)."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "changed",
        "errors",
        "failures",
        "first_ms",
        "histogram",
        "last_ms",
        "max_ms",
        "min_ms",
        "samples",
        "sum_ms",
    )

    def __init__(self) -> None:
        self.samples = 0
        self.errors = 0
        self.sum_ms = 0
        self.min_ms = 0
        self.max_ms = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.first_ms = 0
        self.last_ms = 0
        self.histogram: dict[int, int] = {}
        #: (code, message) -> [count, epoch of its last change]
        self.failures: dict[tuple[str, str], list[int]] = {}
        self.changed = 0

    def stats(self, label: str) -> LabelStats:
        return LabelStats(
            label=label,
            samples=self.samples,
            errors=self.errors,
            sum_ms=float(self.sum_ms),
            min_ms=float(self.min_ms) if self.samples else None,
            max_ms=float(self.max_ms) if self.samples else None,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            first_ts=self.first_ms / 1000.0 if self.samples else None,
            last_ts=self.last_ms / 1000.0 if self.samples else None,
            histogram=dict(self.histogram),
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """What a heartbeat carries for one container, and the epoch to acknowledge once it is delivered."""

    labels: list[LabelStats]
    errors: list[ErrorCount]
    folded: bool
    mark: int


def error_key(code: str, message: str, failure: str) -> tuple[str, str]:
    """The (code, message) a failed sample is counted under.

    As JMeter's own HTML report names errors: the response message, except when the response code
    says success (2xx, 3xx) or is empty and a failure message exists (an assertion failed: the
    response was fine, the assertion's message says what was wrong); an empty response message
    falls back to the failure message too.
    """
    code = code.strip()
    message = message.strip()
    failure = failure.strip()
    if failure and (not code or code[:1] in ("2", "3") or not message):
        message = failure
    return code, message[:MESSAGE_MAX]


#: Histogram buckets one container's report carries at most (~10 bytes each in JSON): 200 busy
#: labels of ~530 buckets each made ~0.9 MB per container per heartbeat, and ten such containers
#: would pass the server's body limit (9 MiB) and be refused for ever.
MAX_BUCKETS_PER_REPORT = 20_000


class LabelTable:
    """The per-label figures and error counts of one container, bounded.

    At most ``max_labels`` labels (further ones are counted under :data:`OTHER_LABEL` and
    :attr:`folded` says so) and ``max_errors`` (code, message) pairs per label (further ones under
    :data:`OTHER_ERROR`). Not thread-safe: its owner holds a lock.
    """

    def __init__(self, max_labels: int = MAX_LABELS, max_errors: int = MAX_ERRORS_PER_LABEL) -> None:
        self.max_labels = max_labels
        self.max_errors = max_errors
        self.labels: dict[str, _Label] = {}
        self.folded = False
        self._epoch = 1
        self._acked = 0
        self._folded_acked = False
        #: Labels left out of a report for its size: name -> mark of the report that then carried
        #: it (None: not sent yet). Pending until that report is acknowledged.
        self._deferred: dict[str, int | None] = {}

    def _label(self, name: str) -> _Label:
        figures = self.labels.get(name)
        if figures is None:
            if len(self.labels) >= self.max_labels and name != OTHER_LABEL:
                self.folded = True
                return self._label(OTHER_LABEL)
            figures = self.labels[name] = _Label()
        return figures

    def add(
        self,
        label: str,
        timestamp_ms: int,
        elapsed_ms: int,
        success: bool,
        received: int = 0,
        sent: int = 0,
        code: str = "",
        message: str = "",
        failure: str = "",
    ) -> None:
        """Count one sample (one JTL row); ``timestamp_ms`` is its start (JMeter's ``timeStamp``)."""
        figures = self.labels.get(label) or self._label(label)
        end_ms = timestamp_ms + elapsed_ms
        if figures.samples:
            if elapsed_ms < figures.min_ms:
                figures.min_ms = elapsed_ms
            if elapsed_ms > figures.max_ms:
                figures.max_ms = elapsed_ms
            if timestamp_ms < figures.first_ms:
                figures.first_ms = timestamp_ms
            if end_ms > figures.last_ms:
                figures.last_ms = end_ms
        else:
            figures.min_ms = figures.max_ms = elapsed_ms
            figures.first_ms, figures.last_ms = timestamp_ms, end_ms
        figures.samples += 1
        figures.sum_ms += elapsed_ms
        figures.bytes_received += received
        figures.bytes_sent += sent
        bucket = elapsed_ms if 0 <= elapsed_ms < 1000 else rt_bucket(elapsed_ms)  # rt_bucket's exact range inline
        histogram = figures.histogram
        histogram[bucket] = histogram.get(bucket, 0) + 1
        figures.changed = self._epoch
        if not success:
            figures.errors += 1
            key = error_key(code, message, failure)
            failures = figures.failures
            entry = failures.get(key)
            if entry is None:
                if len(failures) >= self.max_errors and key != (OTHER_ERROR, OTHER_ERROR):
                    key = (OTHER_ERROR, OTHER_ERROR)
                    entry = failures.get(key)
                if entry is None:
                    entry = failures[key] = [0, 0]
            entry[0] += 1
            entry[1] = self._epoch

    def pending(self, max_buckets: int = MAX_BUCKETS_PER_REPORT) -> Pending:
        """The labels and error counts changed since the last acknowledged epoch (cumulative figures).

        At most about ``max_buckets`` histogram buckets go in one report (always one label at
        least), so that a plan with many busy labels cannot make a heartbeat larger than the server
        takes: the labels left out wait for the next report and go first then.
        """
        acked = self._acked
        mark = self._epoch
        self._epoch += 1  # what changes from now on is newer than this heartbeat
        deferred = self._deferred
        waiting = [name for name in deferred if name in self.labels]
        waiting += [name for name, f in self.labels.items() if f.changed > acked and name not in deferred]
        labels: list[LabelStats] = []
        errors: list[ErrorCount] = []
        budget = max_buckets
        for name in waiting:
            figures = self.labels[name]
            if labels and len(figures.histogram) > budget:
                deferred.setdefault(name, None)  # not sent: pending until a report carrying it is answered
                continue
            budget -= len(figures.histogram)
            labels.append(figures.stats(name))
            every = name in deferred  # left out before: its error counts may be older than the ack
            if every:
                deferred[name] = mark
            for (code, message), (count, changed) in figures.failures.items():
                if every or changed > acked:
                    errors.append(ErrorCount(label=name, code=code, message=message, count=count))
        return Pending(labels, errors, self.folded, mark)

    def everything(self) -> Pending:
        """Every label and error count (for a report kept on disk across an agent restart)."""
        labels = [figures.stats(name) for name, figures in self.labels.items()]
        errors = [
            ErrorCount(label=name, code=code, message=message, count=count)
            for name, figures in self.labels.items()
            for (code, message), (count, _) in figures.failures.items()
        ]
        return Pending(labels, errors, self.folded, self._epoch - 1)

    def resend(self) -> None:
        """The server wants every label again (it lost them: e.g. it restarted since they were sent).

        Every label becomes pending as one left out of a report is: the next reports carry them all,
        with all their error counts, within the bucket budget of :meth:`pending`, until a report
        carrying each is acknowledged.
        """
        for name in self.labels:
            self._deferred[name] = None

    @classmethod
    def restore(cls, labels: list[LabelStats], errors: list[ErrorCount], folded: bool) -> LabelTable:
        """A table holding the figures of a report (an ended container's, read back from disk after an
        agent restart): all of it pending, as nothing of it has been acknowledged since the restart."""
        table = cls(max_labels=max(MAX_LABELS, len(labels)))
        table.folded = folded
        for stats in labels:
            figures = table.labels[stats.label] = _Label()
            figures.samples, figures.errors = stats.samples, stats.errors
            figures.sum_ms = round(stats.sum_ms)
            figures.min_ms = round(stats.min_ms or 0)
            figures.max_ms = round(stats.max_ms or 0)
            figures.bytes_received, figures.bytes_sent = stats.bytes_received, stats.bytes_sent
            figures.first_ms = round((stats.first_ts or 0) * 1000)
            figures.last_ms = round((stats.last_ts or 0) * 1000)
            figures.histogram = dict(stats.histogram)
            figures.changed = table._epoch
        for error in errors:
            owner = table.labels.get(error.label)
            if owner is not None:
                owner.failures[(error.code, error.message)] = [error.count, table._epoch]
        return table

    def acknowledge(self, mark: int) -> None:
        """The heartbeat built at epoch ``mark`` reached the server."""
        if mark > self._acked:
            self._acked = mark
        for name, sent in list(self._deferred.items()):
            if sent is not None and sent <= mark:
                del self._deferred[name]
