"""HD-VILA's hybrid frame sampling: which frames of a video form each clip.

A clip is ``num_frames`` frames (odd) spaced ``sample_rate`` apart around a middle frame ``m``:
``m - nb*sr, ..., m, ..., m + nb*sr`` with ``nb = (num_frames - 1) / 2``. The middle frame is used at
high resolution, the others at low resolution. For a video of ``T`` frames:

* if it is too short (``T < 2*nb*sr + n_clips``) the rate drops to ``floor((T - n_clips) / (2*nb))``
  (possibly 0: every frame of a clip is then the middle frame);
* inference middles: ``range(nb*sr, T - nb*sr)[::len // n_clips][:n_clips]`` (evenly spread);
* training middles: ``n_clips`` distinct random frames of that range, sorted.

The rule is that of the official HD-VILA data loader (microsoft/XPretrain; Xue et al., CVPR 2022,
the hybrid video encoder). Worked examples: T=90, num_frames 7, sr 4, 4 clips -> middles
[12, 28, 44, 60]; T=180, num_frames 11, sr 2, 8 clips -> [10, 30, ..., 150].
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ClipIndices:
    """Frame indices of the sampled clips of one video (0-based)."""

    middles: tuple[int, ...]              # middle (HR) frame of each clip, ascending
    sample_rate: int                      # the rate actually used (lowered for short videos)
    clips: tuple[tuple[int, ...], ...]    # all num_frames frames of each clip, the middle one at index nb

    @property
    def side_frames(self) -> tuple[tuple[int, ...], ...]:
        """The num_frames - 1 LR frames of each clip (all but the middle), in time order."""
        nb = len(self.clips[0]) // 2
        return tuple(c[:nb] + c[nb + 1:] for c in self.clips)

    @property
    def unique(self) -> tuple[int, ...]:
        """Every frame the clips need, once, ascending: what a decoder must read."""
        return tuple(sorted({i for c in self.clips for i in c}))


def sample_clips(total_frames: int, *, num_frames: int = 7, sample_rate: int = 4, n_clips: int = 4,
                 training: bool = False, rng: random.Random | None = None) -> ClipIndices:
    """Choose ``n_clips`` clips of ``num_frames`` frames from a video of ``total_frames`` frames.

    Raises ``ValueError`` for an even ``num_frames``, non-positive sizes, or a video with fewer frames
    than ``n_clips`` (callers turn that into an input error naming the file).
    """
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"num_frames must be odd, got {num_frames}")
    if sample_rate < 0 or n_clips < 1:
        raise ValueError(f"need sample_rate >= 0 and n_clips >= 1, got {sample_rate} and {n_clips}")
    if total_frames < n_clips:
        raise ValueError(f"the video has {total_frames} frame(s), fewer than the {n_clips} clip(s) requested")
    nb = (num_frames - 1) // 2
    sr = sample_rate
    if nb and total_frames < 2 * nb * sr + n_clips:
        sr = (total_frames - n_clips) // (2 * nb)
    candidates = range(nb * sr, total_frames - nb * sr)
    if training:
        middles = sorted((rng or random).sample(candidates, n_clips))
    else:
        middles = list(candidates[:: len(candidates) // n_clips][:n_clips])
    clips = tuple(tuple(range(m - nb * sr, m + nb * sr + 1, sr)) if sr else (m,) * num_frames for m in middles)
    return ClipIndices(middles=tuple(middles), sample_rate=sr, clips=clips)
