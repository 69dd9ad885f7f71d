"""Cross-device identity resolution: one customer behind many identifiers.

Pure domain logic (rules, normalisers, `decide`, `plan_unmerge`) plus the repository
Protocol and its in-memory fake; the service layer in `service.py` wires them together.
"""
