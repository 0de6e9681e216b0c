"""The loss functions of HD-VILA's training, on plain tensors: contrastive InfoNCE between text and
visual embeddings (stage 1 and fine-tuning; :func:`contrastive_loss`, with extra caption negatives
:func:`contrastive_loss_with_negatives`), the cross-process feature gathering it needs
(:func:`gather_features`), and the token masking of masked language modelling (stage 2;
:func:`mask_tokens`). The modules that run the model and combine these into the training loss are
in :mod:`hdvila.objectives`.

Cross-process gathering follows the usual CLIP recipe: every process scores its own texts and videos
against those of all processes; only the local shard carries gradient. With data-parallel gradient
averaging the effective gradient is the full-batch gradient divided by the number of processes (a
constant absorbed by the learning rate).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

# bert-base-uncased ids: [PAD], [UNK], [CLS], [SEP], [MASK].
BERT_SPECIAL_IDS = (0, 100, 101, 102, 103)
BERT_MASK_ID = 103


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """[B_local, ...] -> [B_total, ...]: rows of all processes, in rank order.

    Works without ``torch.distributed`` initialised (returns ``x``), with gloo (CPU) and NCCL, and
    with different batch sizes per process. The local rows are ``x`` itself, so gradient flows to them;
    the other processes' rows are constants.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.detach().new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    rows = [p[:k] for p, k in zip(parts, counts)]
    rows[rank] = x
    return torch.cat(rows)


def contrastive_loss(text_embeds: torch.Tensor, video_embeds: torch.Tensor, temperature: float = 0.05, *,
                     gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE: mean of text->video and video->text cross-entropy.

    text_embeds, video_embeds: [B, D], L2-normalised, text i paired with video i. With ``gather``
    the negatives are the pairs of all processes. Returns a scalar.
    """
    if text_embeds.shape != video_embeds.shape or text_embeds.ndim != 2:
        raise ValueError(f"need paired [B, D] embeddings, got {tuple(text_embeds.shape)} and "
                         f"{tuple(video_embeds.shape)}")
    if gather:
        text_embeds, video_embeds = gather_features(text_embeds), gather_features(video_embeds)
    logits = text_embeds @ video_embeds.t() / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def contrastive_loss_with_negatives(text_embeds: torch.Tensor, visual_embeds: torch.Tensor, negatives: torch.Tensor,
                                    temperature: float = 0.05) -> torch.Tensor:
    """:func:`contrastive_loss` (no gathering) with extra text negatives: visual i must pick its text i
    among every text of the batch *and* ``negatives`` [K, D] (e.g. captions that differ from the true
    ones in one attribute); text-to-visual is unchanged. All inputs L2-normalised. Returns a scalar."""
    logits = text_embeds @ visual_embeds.t() / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    v2t = torch.cat([logits.t(), visual_embeds @ negatives.t() / temperature], dim=1)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(v2t, target))


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, probability: float = 0.15,
                mask_token_id: int = BERT_MASK_ID, vocab_size: int = 30522,
                special_ids: tuple[int, ...] = BERT_SPECIAL_IDS,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick each real, non-special token with ``probability``; of the picked, 80% become
    [MASK], 10% a random token, 10% stay. Padding (attention_mask 0) and special tokens are never picked.

    input_ids, attention_mask: [B, L]. Returns (masked input_ids [B, L], labels [B, L]) with labels the
    original id at picked positions and -100 elsewhere. ``input_ids`` is not modified.
    """
    def uniform() -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=input_ids.device)

    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    picked = eligible & (uniform() < probability)
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
    roll = uniform()
    to_mask = picked & (roll < 0.8)
    to_random = picked & (roll >= 0.8) & (roll < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels
