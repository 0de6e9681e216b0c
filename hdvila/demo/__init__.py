"""The demo domain: procedurally rendered, captioned images and videos.

Real weights and captioned data cannot be downloaded here, so every default model is trained and
measured on this domain: one object with a shape, colour, size, surface pattern and position on a
plain background, and, in videos, a motion. Items are deterministic functions of
``(split, seed, index)``; the test split holds attribute combinations never seen in training.
"""

from hdvila.demo.attributes import BACKGROUNDS, COLORS, MOTIONS, PATTERNS, SHAPES, SIZES, ImageSpec, VideoSpec
from hdvila.demo.captions import caption_image, caption_video
from hdvila.demo.dataset import DemoImageDataset, DemoVideoDataset, sample_image_spec, sample_video_spec
from hdvila.demo.render import render_image, render_video

__all__ = ["SHAPES", "COLORS", "BACKGROUNDS", "SIZES", "PATTERNS", "MOTIONS", "ImageSpec", "VideoSpec",
           "render_image", "render_video", "caption_image", "caption_video", "DemoImageDataset",
           "DemoVideoDataset", "sample_image_spec", "sample_video_spec"]
