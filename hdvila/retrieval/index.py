"""Video discovery and the on-disk video-embedding cache shared by ``eval-retrieval`` and ``search``.

Discovery. A *video* is a file with one of :data:`VIDEO_SUFFIXES` (any letter case) or a *frame
folder*: a folder holding one video's frames as numbered images (``00001.png, ...`` or
``frame_0001.jpg, ...``, consecutive, one size; :func:`hdvila.videoio.frame_folder_files`), read as
one video; other folders of numbered images are skipped with a warning. Hidden entries
(names starting with ``.``) are ignored, and the inside of a frame folder is not searched further.
:func:`find_videos` maps annotation ids to files: ``<id>.<ext>``, a frame folder ``<id>/``, or a
video file whose name is exactly ``<id>`` (DiDeMo ids carry their own extension), anywhere below the folder; when
nothing matches it also tries the id without a video extension (``v1.mov`` -> ``v1.mp4``) and, for
ActivityNet, without the ``v_`` prefix. Several matches: exact name before derived names, then the
extension order of :data:`VIDEO_SUFFIXES` (frame folders last), then the shallowest path.

Cache. One small ``.npz`` per video embedding under
``<cache_dir>/<model id>/<settings id>/<xx>/<entry key>.npz``, where

* model id = SHA-256 of ``config.json`` + ``model.safetensors`` (or, for a model in memory, of its
  config and state dict), so retraining or replacing the weights never reuses old embeddings;
* settings id = hash of everything else that changes an embedding: frame sampling (num_frames,
  sample_rate, n_clips), processor geometry (hr/lr size, resize ratio), compute dtype, cache version;
* entry key = hash of the video's resolved path, size and modification time (for a frame folder:
  its image count, total size and newest mtime), so an edited or replaced video is re-encoded.
  (A video edited within the file system's mtime resolution *and* kept at the same size is not
  noticed; ``--no-cache`` or a fresh ``--cache-dir`` re-encodes everything.)

Entries are written atomically (:mod:`hdvila.atomic`) right after each batch, so an interrupted run
keeps what it finished; an unreadable entry is treated as missing and rewritten. Stale entries of
changed videos are left behind (delete the cache folder to reclaim the space).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

from hdvila.atomic import atomic_write_bytes, atomic_write_text
from hdvila.errors import InputFileError, UserError
from hdvila.retrieval.annotations import VIDEO_ID_EXTENSIONS

# Video files are found by these extensions (DiDeMo keeps .mpg, .wmv, .m4v, .3gp, .mts, .3g2, ...);
# the order is the preference when one id has several files.
VIDEO_SUFFIXES = VIDEO_ID_EXTENSIONS
CACHE_VERSION = 1
_NUMBERED = re.compile(r"\d+$")

VideoSource = Union[Path, torch.Tensor]


# ---- discovery -------------------------------------------------------------------------------------
def _image_suffixes() -> tuple[str, ...]:
    from hdvila.imageio import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def _frame_folder_note(folder: Path, filenames: list[str]) -> str | None:
    """None if ``folder`` is a frame folder (:func:`hdvila.videoio.frame_folder_files`, strict), else
    why not; "" for a folder without numbered images, which is simply not a candidate."""
    from hdvila.videoio import frame_folder_files

    suffixes = _image_suffixes()
    if not any(not f.startswith(".") and os.path.splitext(f)[1].lower() in suffixes
               and _NUMBERED.search(os.path.splitext(f)[0]) for f in filenames):
        return ""
    try:
        frame_folder_files(folder, names=filenames, strict=True)
    except InputFileError as e:
        return str(e)
    return None


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Every video file and frame folder below ``folder`` (recursive, sorted; see module docstring).

    A folder of numbered images that does not look like one video's frames (another name stem than
    a frame word or the folder's name, a gap, several image sizes: :func:`hdvila.videoio.frame_folder_files`)
    is skipped with a warning saying why, and searched further like any folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"{root}: video folder not found." if not root.exists()
                             else f"{root} is a file; pass the folder that holds the videos.")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        here = Path(dirpath)
        if here != root:
            note = _frame_folder_note(here, filenames)
            if note is None:
                found.append(here)
                dirnames[:] = []
                continue
            if note:
                warnings.warn(f"skipped {here}: not a frame folder: {note.split(': ', 1)[-1]}", stacklevel=2)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(here / f for f in filenames
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_SUFFIXES)
    return sorted(found)


def _suffix_rank(p: Path) -> int:
    s = p.suffix.lower()
    return VIDEO_SUFFIXES.index(s) if s in VIDEO_SUFFIXES else len(VIDEO_SUFFIXES)


def find_videos(videos_dir: str | os.PathLike, ids: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """Locate the video of each id below ``videos_dir``.

    Returns ({id: path} for the ids found, [ids not found] in input order).
    """
    root = Path(videos_dir)
    # name -> [(extension rank (frame folders last), depth, path string, path)]
    candidates: dict[str, list[tuple[int, int, str, Path]]] = {}
    for p in list_videos(root):
        depth = len(p.relative_to(root).parts)
        if p.is_dir():
            rank, names = len(VIDEO_SUFFIXES), [p.name]
        else:
            rank, names = _suffix_rank(p), [p.stem, p.name]
        for name in names:
            candidates.setdefault(name, []).append((rank, depth, str(p), p))
    found: dict[str, Path] = {}
    missing: list[str] = []
    for vid in ids:
        keys = [vid]
        stem, ext = os.path.splitext(vid)
        if ext.lower() in VIDEO_SUFFIXES:
            keys.append(stem)
        if vid.startswith("v_"):
            keys.append(vid[2:])
        hit = None
        for key in keys:
            if key in candidates:
                # an exact file name (id with its own extension) beats an id.<ext> match
                exact = [c for c in candidates[key] if c[3].name == vid]
                hit = min(exact or candidates[key])[3]
                break
        if hit is None:
            missing.append(vid)
        else:
            found[vid] = hit
    return found, missing


# ---- identities ------------------------------------------------------------------------------------
def _sha256_file(path: Path, h: "hashlib._Hash") -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)


def _stat_token(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def model_dir_id(model_dir: str | os.PathLike, cache_root: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex) of a model folder's ``config.json`` and ``model.safetensors``.

    With ``cache_root`` the digest is memoised there, keyed by the files' paths, sizes and mtimes, so
    a large checkpoint is hashed once.
    """
    from hdvila.modeling_utils import CONFIG_NAME, WEIGHTS_NAME

    d = Path(model_dir)
    files = [d / CONFIG_NAME, d / WEIGHTS_NAME]
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} is missing: {d} is not a saved model folder.")
    memo = None
    if cache_root is not None:
        token = hashlib.sha256(json.dumps([_stat_token(f) for f in files]).encode()).hexdigest()
        memo = Path(cache_root) / ".model-ids" / token
        try:
            value = memo.read_text(encoding="ascii").strip()
            if re.fullmatch(r"[0-9a-f]{64}", value):
                return value
        except OSError:
            pass
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        _sha256_file(f, h)
    digest = h.hexdigest()
    if memo is not None:
        try:
            atomic_write_text(memo, digest)
        except OSError:
            pass  # a read-only cache still works, it just hashes again next time
    return digest


def model_memory_id(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of a model's config (if it has a dataclass ``config``) and its state dict."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        h.update(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def video_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a video's content for the cache: resolved path + size + mtime (frame folder:
    image count, total size and newest mtime of its images)."""
    p = Path(path)
    st = p.stat()
    if p.is_dir():
        suffixes = _image_suffixes()
        sizes, mtimes, count = 0, st.st_mtime_ns, 0
        with os.scandir(p) as it:
            for e in it:
                if e.is_file() and os.path.splitext(e.name)[1].lower() in suffixes and not e.name.startswith("."):
                    s = e.stat()
                    count, sizes, mtimes = count + 1, sizes + s.st_size, max(mtimes, s.st_mtime_ns)
        return {"path": str(p.resolve()), "kind": "frames", "count": count, "size": sizes, "mtime_ns": mtimes}
    return {"path": str(p.resolve()), "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def sampling_settings(processor: Any, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The processor and compute settings that change a video embedding (part of the cache key)."""
    return {"num_frames": processor.num_frames, "sample_rate": processor.sample_rate, "n_clips": processor.n_clips,
            "hr_size": list(processor.hr_size), "lr_size": list(processor.lr_size),
            "resize_ratio": float(processor.resize_ratio), "dtype": str(dtype).replace("torch.", ""),
            "cache_version": CACHE_VERSION}


def default_cache_dir() -> Path:
    """``$HDVILA_CACHE``, else ``$XDG_CACHE_HOME/hdvila/embeddings``, else ``~/.cache/hdvila/embeddings``."""
    if os.environ.get("HDVILA_CACHE"):
        return Path(os.environ["HDVILA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hdvila" / "embeddings"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ---- the cache -------------------------------------------------------------------------------------
class EmbeddingCache:
    """Video embeddings on disk for one model and one set of sampling settings.

    ``get(fp)`` -> float32 [D] array or None; ``put(fp, embedding [D])``; ``fp`` is
    :func:`video_fingerprint` of the video, taken *before* decoding it.
    """

    def __init__(self, root: str | os.PathLike, model_id: str, settings: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.model_id = model_id
        self.settings = dict(settings)
        self.dir = self.root / model_id[:32] / _digest(self.settings)[:16]
        self._described = False

    def _entry(self, fp: Mapping[str, Any]) -> Path:
        key = _digest(fp)[:40]
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, fp: Mapping[str, Any]) -> np.ndarray | None:
        path = self._entry(fp)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                emb = np.asarray(z["embedding"], dtype=np.float32)
        except FileNotFoundError:
            return None
        except Exception:  # truncated or foreign file: encode again and overwrite
            return None
        if meta.get("video") != dict(fp) or meta.get("model_id") != self.model_id or emb.ndim != 1:
            return None
        return emb

    def put(self, fp: Mapping[str, Any], embedding: np.ndarray | torch.Tensor) -> None:
        if isinstance(embedding, torch.Tensor):
            embedding = embedding.detach().float().cpu().numpy()
        emb = np.asarray(embedding, dtype=np.float32)
        if emb.ndim != 1:
            raise ValueError(f"a cached embedding is one vector [D], got shape {emb.shape}")
        if not self._described:
            self._describe()
        buf = io.BytesIO()
        meta = {"video": dict(fp), "model_id": self.model_id, "settings": self.settings}
        np.savez(buf, embedding=emb, meta=np.array(json.dumps(meta)))
        atomic_write_bytes(self._entry(fp), buf.getvalue())

    def _describe(self) -> None:
        """A human-readable note of what this folder holds (written once)."""
        note = self.dir / "settings.json"
        if not note.exists():
            atomic_write_text(note, json.dumps({"model_id": self.model_id, **self.settings}, indent=1))
        self._described = True


# ---- encoding --------------------------------------------------------------------------------------
@dataclass
class EncodedVideos:
    """Result of :func:`encode_videos`.

    features: {key: float32 tensor [D]} for every video that could be read (L2-normalised, CPU).
    bad: [(key, source label, reason)] of the videos that could not be read, in input order.
    encoded / cached: how many were run through the model / taken from the cache.
    """

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    bad: list[tuple[str, str, str]] = field(default_factory=list)
    encoded: int = 0
    cached: int = 0


class _DecodeSet(torch.utils.data.Dataset):
    """Decodes and preprocesses one video per item; failures come back as a message, never raise."""

    def __init__(self, items: list[tuple[str, VideoSource]], processor: Any) -> None:
        self.items, self.processor = items, processor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        key, source = self.items[i]
        try:
            hr, lr = self.processor.load_video(source)
            return key, hr, lr, None
        except UserError as e:
            return key, None, None, str(e)
        except Exception as e:  # decoder crash on a malformed file: report it against that file
            return key, None, None, f"{_label(source)}: {type(e).__name__}: {str(e)[:200]}"


def _label(source: VideoSource) -> str:
    return str(source) if not isinstance(source, torch.Tensor) else f"<tensor {tuple(source.shape)}>"


def encode_videos(model: Any, processor: Any, sources: Sequence[tuple[str, VideoSource]], *,
                  cache: EmbeddingCache | None = None, batch_size: int = 8, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32, workers: int = 0, stop_encoding_on_bad: bool = False,
                  progress: bool = True, desc: str = "videos") -> EncodedVideos:
    """Video embeddings for ``sources`` ([(key, path or tensor [T, 3, H, W])]), using and filling ``cache``.

    Every source is attempted (all bad ones are reported, not just the first). With
    ``stop_encoding_on_bad`` (used when a bad video will fail the run anyway and nothing is cached)
    videos after the first failure are still decoded, to find every bad one, but not encoded.
    ``model.get_video_features(hr [B, n_clips, 3, Hh, Wh], lr [B, n_clips, F-1, 3, Hl, Wl])`` must
    return [B, D]. Files are read with ``workers`` processes (0: in this process).
    """
    from tqdm import tqdm

    out = EncodedVideos()
    todo: list[tuple[str, VideoSource]] = []
    prints: dict[str, dict] = {}
    for key, source in sources:
        if cache is not None and not isinstance(source, torch.Tensor):
            try:
                fp = video_fingerprint(source)
            except OSError as e:
                out.bad.append((key, _label(source), f"{source}: cannot read ({e.strerror})."))
                continue
            emb = cache.get(fp)
            if emb is not None:
                out.features[key] = torch.from_numpy(emb)
                out.cached += 1
                continue
            prints[key] = fp
        todo.append((key, source))
    if not todo:
        return out
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(_DecodeSet(todo, processor), batch_size=batch_size, num_workers=workers,
                                         collate_fn=list, shuffle=False)
    labels = dict((k, _label(s)) for k, s in todo)
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32
                else _nullcontext())
    with tqdm(total=len(todo), desc=desc, unit="video", disable=not progress) as bar, torch.no_grad():
        for batch in loader:
            good = []
            for key, hr, lr, error in batch:
                if error is not None:
                    out.bad.append((key, labels[key], error))
                else:
                    good.append((key, hr, lr))
            if good and not (stop_encoding_on_bad and out.bad):
                hr = torch.stack([g[1] for g in good]).to(device)
                lr = torch.stack([g[2] for g in good]).to(device)
                with autocast:
                    feats = model.get_video_features(hr, lr)
                feats = feats.float().cpu()
                for (key, _, _), f in zip(good, feats):
                    out.features[key] = f
                    if key in prints and cache is not None:
                        try:
                            cache.put(prints[key], f)
                        except OSError as e:  # read-only or full disk: the run itself can go on
                            warnings.warn(f"cannot write the embedding cache in {cache.dir} ({e.strerror or e}); "
                                          f"continuing without caching", stacklevel=2)
                            cache = None
                out.encoded += len(good)
            bar.update(len(batch))
    return out


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def encode_texts(model: Any, processor: Any, texts: Sequence[str], *, batch_size: int = 128,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 progress: bool = True) -> tuple[torch.Tensor, int]:
    """Text embeddings float32 [len(texts), D] (CPU) and how many texts were truncated to the
    processor's ``max_length`` tokens (the per-text warnings are folded into that count)."""
    from tqdm import tqdm

    from hdvila.processing_hdvila import TextTruncationWarning

    device = torch.device(device)
    chunks = []
    truncated = 0
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32
                else _nullcontext())
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), desc="texts", unit="batch",
                          disable=not progress or len(texts) <= batch_size):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TextTruncationWarning)
                tok = processor.tokenize(list(texts[start:start + batch_size]))
            truncated += sum(w.message.count for w in caught if isinstance(w.message, TextTruncationWarning))
            with autocast:
                feats = model.get_text_features(tok["input_ids"].to(device), tok["attention_mask"].to(device))
            chunks.append(feats.float().cpu())
    return torch.cat(chunks), truncated


def model_device_dtype(model: torch.nn.Module, device: str | torch.device | None,
                       dtype: str | torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Resolve ``--device`` / ``--dtype`` (:mod:`hdvila.device` policy: "auto" = CUDA if present, and
    fp16 autocast on CUDA, fp32 on CPU) and move ``model`` there. ``device=None`` keeps the model
    where it is (the training loop's device)."""
    from hdvila.device import get_device, get_dtype

    if device is None:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = get_device(device)
        model.to(dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = get_dtype(dtype, dev)
    return dev, dt


__all__ = ["VIDEO_SUFFIXES", "EmbeddingCache", "EncodedVideos", "default_cache_dir", "encode_texts",
           "encode_videos", "find_videos", "list_videos", "model_dir_id", "model_memory_id", "sampling_settings",
           "video_fingerprint", "model_device_dtype"]
