"""Pure decisions of the notification pipeline: mute -> dedup -> retry -> record.

Nothing here performs I/O; the service wiring feeds in the current time, the firing alerts and
delivery outcomes, and carries out what these functions decide.
"""
