"""Is an image inside what the generator can draw? A threshold on the inversion PSNR.

A generator draws only its training domain: the bundled 64 px generator draws flat-coloured shapes,
and a photo (skimage's astronaut) comes back from its inversion as a blurred blob at ~10 dB. The
edit of such a reconstruction is meaningless, so the user is told, in the CLI, the sidecar and the
web UI, instead of receiving a blob without a word.

The threshold is calibrated per encoder on in-domain images (:func:`calibrate`): the ``quantile``
(default 1%) of their inversion PSNRs, so about 1 in 100 in-domain images is flagged. It is stored
in the encoder's config (``in_domain_psnr_db``); an encoder without it (a user's own, uncalibrated)
flags nothing. The measured rates, in-domain and on real photos, are in docs/results.md.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

QUANTILE = 0.01


def calibrate(in_domain_psnr: Sequence[float], quantile: float = QUANTILE) -> float:
    """The threshold (dB, rounded down to 0.1) below which ``quantile`` of the in-domain PSNRs fall."""
    values = np.asarray(list(in_domain_psnr), dtype=np.float64)
    if values.size < 20:
        raise ValueError(f"calibration needs at least 20 in-domain images, got {values.size}")
    return float(np.floor(np.quantile(values, quantile) * 10) / 10)


def out_of_domain_note(psnr_db: float, threshold_db: float | None, label: str) -> str:
    """A one-line note when ``psnr_db`` is below the calibrated ``threshold_db``, else ''."""
    if threshold_db is None or not psnr_db < threshold_db:
        return ""
    return (f"{label}: the inversion reached only {psnr_db:.1f} dB (in-domain images reach {threshold_db:.1f} dB or "
            f"more): this image is outside what this generator can draw, so the edit changes a reconstruction that "
            f"does not look like it. Use a generator trained on images like this one (the README's section "
            f"'Official weights and your own images').")
