"""model + images → labels: top-k classes with probabilities, for a checkpoint, an ONNX (float or Q/DQ) or an
engine, fed with the preprocessing the model records. From Python::

    import edgeres
    with edgeres.load("runs/demo/model.onnx") as model:
        print(model.predict("shoe.png").label)

``edgeres`` re-exports ``load`` from here, so this module is imported with the package (and by every command): it
imports numpy, Pillow, ONNX and the runtimes inside the functions that use them, keeping ``edgeres --help`` fast.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeres.errors import ArtifactError, ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from edgeres.backends import Session
    from edgeres.data.preprocess import Preprocessing

CHECKPOINT_SUFFIXES = (".pt", ".pth")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image, most probable first: ``(label, index, probability)``."""

    source: str
    top: list[tuple[str, int, float]]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def index(self) -> int:
        return self.top[0][1]

    @property
    def probability(self) -> float:
        return self.top[0][2]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "index": self.index, "probability": self.probability,
                "top": [{"label": lab, "index": i, "probability": p} for lab, i, p in self.top]}


def softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Model:
    """A loaded classifier: ``predict`` takes images or paths, ``logits`` takes preprocessed NCHW arrays."""

    def __init__(self, path: Path, kind: str, session: Session, preprocessing: Preprocessing, classes: list[str],
                 outputs_probabilities: bool = False) -> None:
        self.path, self.kind, self.session = path, kind, session
        self.preprocessing, self.classes = preprocessing, classes
        self.outputs_probabilities = outputs_probabilities

    def logits(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        import numpy as np

        step = min(batch_size, self.session.max_batch or batch_size)
        return np.concatenate([self.session.infer(x[i:i + step]) for i in range(0, len(x), step)])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        out = self.logits(x)
        return out.astype("float64") if self.outputs_probabilities else softmax(out)

    def predict(self, images: Image.Image | str | Path | Sequence[Image.Image | str | Path],
                top_k: int = 5) -> Any:
        """One ``Prediction`` for one image (a PIL image or a PNG/JPEG path), a list for a list."""
        from PIL import Image

        if isinstance(images, (Image.Image, str, Path)):
            return self.predict_many([images], top_k)[0]
        return self.predict_many(images, top_k)

    def predict_many(self, items: Iterable[Image.Image | str | Path], top_k: int = 5,
                     batch_size: int = 64) -> list[Prediction]:
        import numpy as np
        from PIL import Image

        from edgeres.data.datasets import open_image

        items = list(items)
        out: list[Prediction] = []
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            imgs = [it if isinstance(it, Image.Image) else open_image(Path(it)) for it in chunk]
            prob = self.probabilities(np.stack([self.preprocessing(im) for im in imgs]))
            k = max(1, min(top_k, prob.shape[1]))
            for it, p in zip(chunk, prob, strict=True):
                best = np.argsort(-p, kind="stable")[:k]
                out.append(Prediction("<image>" if isinstance(it, Image.Image) else str(it),
                                      [(self._name(int(j)), int(j), float(p[j])) for j in best]))
        return out

    def _name(self, i: int) -> str:
        return self.classes[i] if i < len(self.classes) else str(i)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(path: str | Path, target: str = "cpu") -> Model:
    """Open a checkpoint (.pt/.pth), an ONNX or an engine (.engine/.plan) for prediction on ``target``'s runtime."""
    from edgeres.backends import get_backend, require
    from edgeres.onnx_model import OUTPUT_KEY, RECIPE_KEY, load_onnx, metadata, onnx_info
    from edgeres.quantize.recipes import recipe_for
    from edgeres.targets import load_target

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model not found: {path}; pass a checkpoint, an ONNX or an engine")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return _checkpoint(path)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        return _engine(path, target)
    model = load_onnx(path)
    info = onnx_info(path, model)
    meta = metadata(model)
    rec = json.loads(meta[RECIPE_KEY]) if RECIPE_KEY in meta else None
    simulate = bool(rec and recipe_for(rec["recipe"]).accuracy_mode == "simulate")  # as bench scores it on a CPU
    sess = require(get_backend("onnxruntime")).load(path, load_target(target), simulate)
    return Model(path, "onnx", sess, info.preprocessing, info.classes, meta.get(OUTPUT_KEY) == "probabilities")


def _checkpoint(path: Path) -> Model:
    from edgeres.backends.torch import TorchSession
    from edgeres.models import load_checkpoint

    ck = load_checkpoint(path)
    if ck.preprocessing is None:
        raise ArtifactError(f"{path} records no preprocessing; export it with `edgeres export {path} --size … "
                            f"--mean … --std … --classes labels.txt` and predict with the ONNX")
    return Model(path, "checkpoint", TorchSession(ck.model()), ck.preprocessing, list(ck.classes))


def _engine(path: Path, target: str) -> Model:
    from edgeres.artifacts import read_manifest
    from edgeres.backends import get_backend, require
    from edgeres.data.preprocess import Preprocessing
    from edgeres.targets import load_target

    man = read_manifest(path)
    if man is None or not man.get("preprocessing"):
        raise ArtifactError(f"{path} has no manifest with its preprocessing ({path}.json); rebuild it with "
                            f"`edgeres build`")
    t = load_target(man.get("config", {}).get("target") or target)
    backend = require(get_backend(t.runtime))
    classes = list(man.get("results", {}).get("classes") or [])
    return Model(path, "engine", backend.load(path, t), Preprocessing.from_dict(man["preprocessing"]), classes)


def image_inputs(paths: Sequence[Path]) -> list[Path]:
    """The images named, with folders expanded (recursively, sorted); anything else is refused with its name."""
    from edgeres.data.datasets import IMAGE_SUFFIXES, image_files
    from edgeres.data.pixels import OTHER_IMAGES

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise DataError(f"{p} holds no PNG or JPEG images; pass image files or a folder of them")
            out += found
        elif not p.is_file():
            raise DataError(f"{p} does not exist; pass image files or folders")
        elif p.suffix.lower() in OTHER_IMAGES:
            raise DataError(f"{p} is a {p.suffix.lower()} image, and edgeres reads PNG and JPEG; convert it "
                            f"(ImageMagick: convert {shlex.quote(p.name)} {shlex.quote(p.stem + '.png')})")
        elif p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{p} is not a PNG or JPEG image; pass .png, .jpg or .jpeg files")
        else:
            out.append(p)
    if not out:
        raise ConfigError("no images given; pass image files or folders")
    return out
