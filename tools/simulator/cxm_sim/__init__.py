"""Traffic simulator for the CXM platform: realistic cross-channel customer journeys, posted
to a running platform over the ingest's HTTP API (``python -m cxm_sim --help``)."""
