"""``python -m cxm_ingest``: run the ingest service."""

from cxm_ingest.api import create_app
from cxm_ingest.config import IngestSettings
from cxm_shared.runner import serve


def main() -> None:
    settings = IngestSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
