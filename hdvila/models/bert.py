"""BERT text encoder, multimodal layers and pre-training heads, with Hugging Face BERT key names
(so BERT checkpoints such as the offline MiniLM load by name) under the module tree of
``hdvila_stage2.pt``: ``transformer.bert.{embeddings,encoder,pooler1,visual_embeddings,pooler2}``,
``transformer.cls``, ``transformer.{t,v}_proj``.

The encoder's first ``text_layers`` layers read text alone; at stage 2 the remaining layers read the
text states followed by the visual tokens of one clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdvila.configuration_hdvila import HDVILAConfig


class BertEmbeddings(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        h = config.text_hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, L, hidden] (token type 0 everywhere)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        h = config.text_hidden_size
        self.num_heads = config.text_heads
        self.dropout_p = config.attention_dropout
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.num_heads, c // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0)
        return out.transpose(1, 2).reshape(n, length, c)


class BertSelfOutput(nn.Module):
    def __init__(self, config: HDVILAConfig, in_features: int | None = None) -> None:
        super().__init__()
        h = config.text_hidden_size
        self.dense = nn.Linear(in_features or h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.text_hidden_size, config.text_intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, in_features=config.text_intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, hidden]; mask [B, 1, 1, L] bool, True where a key may be attended."""
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Run layers ``start..stop-1``. x [B, L, hidden]; attention_mask [B, L], 1 = real token."""
        mask = attention_mask.bool()[:, None, None, :]
        for layer in self.layer[start:stop]:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """dense + tanh. ``pooler1`` reads the masked token mean, ``pooler2`` the first token."""

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.text_hidden_size, config.text_hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x))


class VisualEmbeddings(nn.Module):
    """Video grid of one clip -> visual tokens for the multimodal layers.

    Adds learned row and column embeddings, keeps a random subset of ``visual_token_sample_size``
    tokens in training, adds the visual token-type embedding, then LayerNorm and dropout.
    ``position_embeddings`` exists in the released checkpoint but is unused. When the video width
    differs from the text width (mini), ``input_proj`` maps the grid into the text width first.
    """

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        h = config.text_hidden_size
        self.sample_size = config.visual_token_sample_size
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.row_position_embeddings = nn.Embedding(config.max_grid_positions, h)
        self.col_position_embeddings = nn.Embedding(config.max_grid_positions, h)
        self.token_type_embeddings = nn.Embedding(1, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.input_proj = nn.Linear(config.vision_width, h) if config.vision_width != h else None

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """grid [N, rows, cols, vision_width] -> tokens [N, rows*cols (or the sample size), hidden]."""
        n, rows, cols, _ = grid.shape
        if self.input_proj is not None:
            grid = self.input_proj(grid)
        grid = (grid + self.row_position_embeddings.weight[:rows, None, :]
                + self.col_position_embeddings.weight[None, :cols, :])
        tokens = grid.reshape(n, rows * cols, -1)
        if self.training and 0 < self.sample_size < tokens.shape[1]:
            keep = torch.randperm(tokens.shape[1], device=tokens.device)[: self.sample_size].sort().values
            tokens = tokens[:, keep]
        return self.dropout(self.LayerNorm(tokens + self.token_type_embeddings.weight[0]))


class HDVILABert(nn.Module):
    """``transformer.bert``: embeddings, encoder, ``pooler1`` (text), and at stage 2
    ``visual_embeddings`` and ``pooler2`` (multimodal)."""

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler1 = BertPooler(config)
        if config.stage == 2:
            self.visual_embeddings = VisualEmbeddings(config)
            self.pooler2 = BertPooler(config)


class PredictionHeadTransform(nn.Module):
    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.text_hidden_size, config.text_hidden_size)
        self.LayerNorm = nn.LayerNorm(config.text_hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class LMPredictionHead(nn.Module):
    """Token logits; ``bias`` and ``decoder.bias`` are one tensor, as in the released checkpoint."""

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.text_hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class PreTrainingHeads(nn.Module):
    """``transformer.cls``: MLM ``predictions`` and the (unused here) matching head ``seq_relationship``."""

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.predictions = LMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.text_hidden_size, 2)


class HDVILATransformer(nn.Module):
    """``transformer``: the BERT part, the heads (stage 2) and the two projections into the joint space."""

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.bert = HDVILABert(config)
        if config.stage == 2:
            self.cls = PreTrainingHeads(config)
        self.t_proj = nn.Linear(config.text_hidden_size, config.projection_dim)
        self.v_proj = nn.Linear(config.vision_width, config.projection_dim)
        self.reset_parameters(config.initializer_range)

    def reset_parameters(self, std: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    nn.init.zeros_(m.weight[m.padding_idx])
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if hasattr(self, "cls"):
            # The MLM decoder starts as a copy (not a tie) of the word embeddings, as released.
            with torch.no_grad():
                self.cls.predictions.decoder.weight.copy_(self.bert.embeddings.word_embeddings.weight)
