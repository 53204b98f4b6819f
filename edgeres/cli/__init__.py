"""The ``edgeres`` command (``app.py``): a thin click layer over the library, one command per arrow."""
from edgeres.cli.app import default, emit, handle_errors, json_option, main, preprocessing_options

__all__ = ["default", "emit", "handle_errors", "json_option", "main", "preprocessing_options"]
