"""dataset → checkpoint: the training loop (``loop.py``), its batches (``loader.py``) and fine-tuning's start
(``finetune.py``).
"""
from edgeres.config import TrainConfig
from edgeres.train.loop import TrainResult, data_inputs, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "data_inputs", "evaluate", "train"]
