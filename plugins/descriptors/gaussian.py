"""Work in progress: registers nothing yet."""

from amp_core import hookimpl


@hookimpl
def amp_descriptors() -> list[object]:
    """Register nothing until the plugin is complete."""
    return []
