"""Pure scoring mathematics: no Kafka, no faust, no I/O.

The faust agents call these functions once per event, so every per-event update here is a few
plain-Python operations on small, bounded state. Heavy numerics (numpy/scipy) run only when a
model is fitted (``bgnbd.fit``) or when a base-wide snapshot is recomputed (RFM quintile and
decile cut points).

Times are seconds since the Unix epoch (UTC) as ``float`` everywhere: cheaper to compare and
to serialise into a changelog than ``datetime``.
"""
