"""Models with torchvision's names (``resnet.py``, ``densenet.py``) and their checkpoints (``checkpoint.py``)."""
from edgeres.models.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint

__all__ = ["Checkpoint", "build_model", "load_checkpoint", "save_checkpoint"]
