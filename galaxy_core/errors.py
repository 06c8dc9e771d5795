"""The project's own error types: anything a user can cause raises one of these, never a raw
library exception, so the CLI and the app can turn it into one clear line."""


class GalaxyError(Exception):
    """Base class: a problem with the user's input or setup, with a message meant for people."""


class CatalogueError(GalaxyError):
    """A catalogue file is missing, unreadable or lacks the columns and types it should have."""


class ImageLoadError(GalaxyError):
    """An image cannot be read: empty, truncated, not an image, too large, or an unsupported kind."""


class NotAnImageError(ImageLoadError):
    """The content is not an image of any kind (a text file, an archive, a program): a file a
    folder search may pass over with a note, unlike an image it cannot read."""


class ModelLoadError(GalaxyError):
    """A model folder is missing, incomplete, unsafe (pickle) or does not match this code."""


class DataNotFoundError(GalaxyError):
    """The data folder is not where the tool looked; the message says how to point it there."""
