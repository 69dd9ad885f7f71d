"""The alerting service's exceptions; the API maps them to 4xx answers."""

from __future__ import annotations

from cxm_shared.errors import CxmError


class AlertingError(CxmError):
    status_code = 400


class NotFound(AlertingError):
    status_code = 404


class InvalidTransition(AlertingError):
    """An alert lifecycle step that its current status does not allow (409)."""

    status_code = 409
