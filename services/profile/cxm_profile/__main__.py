"""``python -m cxm_profile``: run the profile service."""

from cxm_profile.api import create_app
from cxm_profile.config import ProfileSettings
from cxm_shared.runner import serve


def main() -> None:
    settings = ProfileSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
