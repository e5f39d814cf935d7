"""Work in progress: registers nothing yet."""

from amp_core import hookimpl


@hookimpl
def amp_models() -> list[object]:
    """Register nothing until the plugin is complete."""
    return []
