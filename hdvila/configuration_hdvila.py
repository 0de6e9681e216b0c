"""Configuration of the HD-VILA video-language model.

One dataclass describes both the released architecture (``preset("large")``, whose module names,
key set and shapes equal the official ``hdvila_stage2.pt``) and a CPU-sized model with the same
structure (``preset("mini")``, the default). Every difference between the two is a field here, so
the model code has a single path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

PRESETS = ("mini", "large")
VIDEO_INPUTS = ("hybrid", "lr_only", "hr_only")


@dataclass
class HDVILAConfig:
    """All architecture settings of :class:`~hdvila.modeling_hdvila.HDVILAModel`.

    The defaults are the ``mini`` preset. Sizes are (height, width) pairs in pixels.
    """

    model_type: str = "hdvila"
    stage: int = 2                          # 1: dual encoder (retrieval); 2: adds multimodal layers + MLM head

    # Frames. The HR middle frame is 4x the LR geometry (paper ratio); num_frames is the clip length
    # the time embedding is built for (other lengths are interpolated).
    num_frames: int = 7                     # frames per clip, odd; the middle one is the HR frame
    hr_size: tuple[int, int] = (128, 128)   # HR middle-frame crop
    lr_size: tuple[int, int] = (32, 32)     # LR side-frame crop
    resize_ratio: float = 9 / 8             # frames are resized to ratio*crop before cropping (180/160 officially)

    # ResNet branches (Bottleneck, torchvision layout). Stage i outputs 4*resnet_width*2**i channels.
    resnet_layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # blocks per stage; (3, 4, 6, 3) = ResNet-50
    resnet_width: int = 16                  # stem channels and bottleneck width of stage 1 (64 for ResNet-50)
    resnet_stem_pool: bool = False          # 3x3/2 max-pool after the stem (ResNet-50: True)
    resnet_norm_eval: bool = False          # keep BatchNorm statistics frozen in train mode (released model: True)
    cnn_low_layer4: bool = False            # build the LR branch's unused stage 4 (released checkpoint has it)

    # Hybrid (TimeSformer) encoder; vision_width is H, the channel width of the video grid.
    vision_width: int = 256
    timesformer_depth: int = 4
    timesformer_heads: int = 8
    timesformer_mlp_ratio: float = 4.0
    timesformer_drop_path: float = 0.1      # stochastic depth, linear from 0 over the blocks
    # Which visual path encodes a clip (ablation switch; the paper's model is "hybrid"):
    # "hybrid": HR middle frame + LR side frames through the TimeSformer (the released architecture);
    # "lr_only": all frames at LR (the middle frame downsampled 4x) through cnn_low + TimeSformer;
    # "hr_only": the HR middle frame alone through cnn stage 4 (a single-frame image model).
    video_input: str = "hybrid"

    # Language encoder (BERT) and multimodal layers (BERT layers after the text layers).
    text_init: str = "minilm"               # "minilm": load the offline all-MiniLM-L6-v2 text tower; "random"
    freeze_text_encoder: bool = True        # text embeddings + text layers frozen (and not saved when "minilm")
    text_trainable_layers: int = 0          # with freeze_text_encoder: the top N text layers train all the same
                                            # (and are saved), so words the frozen tower puts close can separate
    vocab_size: int = 30522
    text_hidden_size: int = 384
    text_layers: int = 6                    # layers of the text encoder
    multimodal_layers: int = 2              # further layers over [text; visual] tokens (stage 2 only)
    text_heads: int = 12
    text_intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_grid_positions: int = 100           # rows/columns of the visual-token position tables
    visual_token_sample_size: int = 160     # stage 2 training keeps this many random visual tokens per clip
    clip_aggregation: str = "lse"           # stage 2: how clip scores are pooled ("lse", "mean", "max")

    # Joint embedding space.
    projection_dim: int = 256
    temperature: float = 0.05               # contrastive logits are cosine / temperature
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("hr_size", "lr_size", "resnet_layers"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        problems = []
        if self.model_type != "hdvila":
            problems.append(f"model_type must be 'hdvila', got {self.model_type!r}")
        if self.stage not in (1, 2):
            problems.append(f"stage must be 1 or 2, got {self.stage}")
        if not 0 <= self.text_trainable_layers <= self.text_layers:
            problems.append(f"text_trainable_layers must be from 0 to text_layers ({self.text_layers}), "
                            f"got {self.text_trainable_layers}")
        if self.num_frames < 1 or self.num_frames % 2 != 1:
            problems.append(f"num_frames must be odd, got {self.num_frames}")
        if len(self.resnet_layers) != 4:
            problems.append(f"resnet_layers needs 4 stages, got {self.resnet_layers}")
        if any(h != 4 * lr for h, lr in zip(self.hr_size, self.lr_size)):
            problems.append(f"hr_size {self.hr_size} must be 4x lr_size {self.lr_size}")
        s4 = self.resnet_stride(4) * 2
        if any(v % s4 for v in self.hr_size):
            problems.append(f"hr_size {self.hr_size} must be divisible by {s4} (stage-4 stride x 2x2 pool)")
        if any(v % self.resnet_stride(3) for v in self.lr_size):
            problems.append(f"lr_size {self.lr_size} must be divisible by the stage-3 stride {self.resnet_stride(3)}")
        if self.vision_width % self.timesformer_heads:
            problems.append(f"vision_width {self.vision_width} not divisible by {self.timesformer_heads} heads")
        if self.text_hidden_size % self.text_heads:
            problems.append(f"text_hidden_size {self.text_hidden_size} not divisible by {self.text_heads} heads")
        if self.text_init not in ("minilm", "random"):
            problems.append(f"text_init must be 'minilm' or 'random', got {self.text_init!r}")
        if self.video_input not in VIDEO_INPUTS:
            problems.append(f"video_input must be one of {', '.join(VIDEO_INPUTS)}, got {self.video_input!r}")
        if self.clip_aggregation not in ("lse", "mean", "max"):
            problems.append(f"clip_aggregation must be lse, mean or max, got {self.clip_aggregation!r}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if problems:
            raise ValueError("invalid HDVILAConfig: " + "; ".join(problems))

    # ---- derived geometry -------------------------------------------------------------------------------
    def resnet_stride(self, stage: int) -> int:
        """Total stride of ResNet stage ``stage`` (1-4): stem conv 2, optional pool 2, stages 2-4 halve."""
        return 2 * (2 if self.resnet_stem_pool else 1) * 2 ** (stage - 1)

    def resnet_channels(self, stage: int) -> int:
        """Output channels of ResNet stage ``stage`` (1-4)."""
        return 4 * self.resnet_width * 2 ** (stage - 1)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of the video grid: the HR stage-4 map after the 2x2 pool (10x16 released)."""
        s = self.resnet_stride(4) * 2
        return self.hr_size[0] // s, self.hr_size[1] // s

    @property
    def num_hidden_layers(self) -> int:
        """BERT layers the model builds: text layers, plus the multimodal layers at stage 2."""
        return self.text_layers + (self.multimodal_layers if self.stage == 2 else 0)

    @property
    def lr_resize(self) -> tuple[int, int]:
        """LR frames are resized to this (height, width) before cropping ``lr_size`` (180x288 released)."""
        return tuple(int(round(v * self.resize_ratio)) for v in self.lr_size)  # type: ignore[return-value]

    @classmethod
    def preset(cls, name: str = "mini", **overrides: Any) -> "HDVILAConfig":
        """``"mini"`` (CPU-sized, MiniLM text tower) or ``"large"`` (the released architecture).

        ``overrides`` replace single fields, e.g. ``preset("large", stage=1)``.
        """
        if name == "mini":
            base = cls()
        elif name == "large":
            base = cls(
                hr_size=(640, 1024), lr_size=(160, 256),
                resnet_layers=(3, 4, 6, 3), resnet_width=64, resnet_stem_pool=True, resnet_norm_eval=True,
                cnn_low_layer4=True,
                vision_width=1024, timesformer_heads=16,
                text_init="random", freeze_text_encoder=False, text_hidden_size=1024, text_layers=12,
                multimodal_layers=12, text_heads=16, text_intermediate_size=4096,
                projection_dim=1024,
            )
        else:
            raise ValueError(f"unknown HD-VILA preset {name!r}; choose from {', '.join(PRESETS)}")
        return dataclasses.replace(base, **overrides) if overrides else base
