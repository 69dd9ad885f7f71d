"""Touchpoint events: native and Segment-compatible intake, dedup, and publishing to Kafka."""
