"""NudeNet's detector, run lean: its bundled 320 px model on an ONNX session of one thread,
its own pre-processing, and its post-processing done on whole arrays.

``nudenet.NudeDetector.detect`` walks the model's 2,100 candidate boxes in a Python loop
(about 6 ms of CPU an image, a fifth of the check); :func:`detections` does the same
arithmetic on arrays, in the same float32 precision, and hands the same boxes and scores
to the same OpenCV non-maximum suppression, so it returns what NudeNet returns.
``tests/test_output_moderation.py`` holds the two to that on the tests' images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIN_SCORE = 0.2  # NudeNet's own cut-offs: a candidate's score, then the NMS's
NMS_SCORE, NMS_IOU = 0.25, 0.45


class LeanNudeDetector:
    """The ``Detector`` shape (RGBA pixels in, NudeNet's detections out)."""

    def __init__(self) -> None:
        import nudenet  # type: ignore[import-untyped]

        self.model = Path(nudenet.__file__).parent / "320n.onnx"  # the model it bundles
        self.session = _single_threaded_session(self.model)
        self.input_name: str = self.session.get_inputs()[0].name
        self.size = 320

    def detect(self, image: Any) -> list[dict[str, Any]]:
        from nudenet.nudenet import _read_image  # type: ignore[import-untyped]

        blob, _, _, x_pad, y_pad, width, height = _read_image(image, self.size)
        outputs = self.session.run(None, {self.input_name: blob})
        return detections(outputs[0], (width, height), (x_pad, y_pad), self.size)


def _single_threaded_session(model: Path) -> Any:
    """One intra-op thread: the check takes a little longer, but no longer fights the API
    and the model for every core (it runs beside the next generation, on the worker's
    finishing thread), and no thread pool spins: more threads cost more CPU, not less."""
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


def detections(
    output: Any, original: tuple[int, int], padding: tuple[int, int], size: int
) -> list[dict[str, Any]]:
    """NudeNet's ``_postprocess``, on arrays: candidates over the score cut-off, boxes
    scaled back to the padded original and clipped to it, then non-maximum suppression."""
    import cv2
    import numpy as np
    from nudenet.nudenet import __labels as labels

    rows = np.transpose(np.squeeze(output))
    scores = np.amax(rows[:, 4:], axis=1)
    kept = scores >= MIN_SCORE
    rows, scores = rows[kept], scores[kept]
    classes = np.argmax(rows[:, 4:], axis=1)
    (width, height), (x_pad, y_pad) = original, padding
    x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    x = np.clip((x - w / 2) * (width + x_pad) / size, 0, width)
    y = np.clip((y - h / 2) * (height + y_pad) / size, 0, height)
    w = np.minimum(w * (width + x_pad) / size, width - x)
    h = np.minimum(h * (height + y_pad) / size, height - y)
    boxes = np.stack([x, y, w, h], axis=1).tolist()
    chosen = cv2.dnn.NMSBoxes(boxes, scores.tolist(), NMS_SCORE, NMS_IOU)
    return [
        {
            "class": labels[classes[i]],
            "score": float(scores[i]),
            "box": [int(value) for value in boxes[i]],
        }
        for i in chosen
    ]
