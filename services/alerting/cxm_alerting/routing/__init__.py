"""The routing tree: which team (receiver) an alert reaches, and why.

Modelled on Prometheus Alertmanager: a YAML tree of routes with label matchers, evaluated
depth-first; every decision can be explained for the route-testing endpoint.
"""
