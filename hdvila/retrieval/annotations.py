"""Readers for retrieval annotation files: video ids and their captions, grouped per video.

Formats, as the datasets publish them and as CLIP4Clip (Luo et al., 2021) reads them for text-video
retrieval:

``msrvtt``
    MSR-VTT (Xu et al., CVPR 2016). The 1k-A test CSV of JSFusion (Yu et al., ECCV 2018) with
    header ``key,vid_key,video_id,sentence`` (only ``video_id`` and ``sentence`` are used; the
    delimiter is read off the header, as copies with ``;`` circulate), or an
    ``MSRVTT_data.json``-style file: ``{"videos": [{"video_id", "split", ...}], "sentences":
    [{"video_id", "caption", "sen_id"}]}``; with ``split`` only the sentences of videos of that
    split are kept. Chosen by suffix (.csv / .json).
``didemo``
    DiDeMo (Hendricks et al., ICCV 2017): a JSON list of ``{"video", "description", ...}`` (one
    sentence per entry, several per video). Video ids keep the extension of the original upload
    (:data:`VIDEO_ID_EXTENSIONS`). The released ``test_data.json`` holds more videos than the
    1,004-video test list; :func:`restrict_to_id_list` keeps those of a list file.
``activitynet``
    ActivityNet Captions (Krishna et al., ICCV 2017): ``{"v_<id>": {"duration", "timestamps",
    "sentences": [...]}}``.
``lsmdc``
    LSMDC (Rohrbach et al., IJCV 2017): tab-separated lines ``CLIP_ID, START_ALIGNED, END_ALIGNED,
    START_EXTRACTED, END_EXTRACTED, SENTENCE``; columns after the sixth are taken as part of the
    sentence (joined with a space).
``jsonl``
    HD-VILA style, one JSON object per line: ``{"clip_id": ..., "text": str | [str, ...]}``; lines
    with the same ``clip_id`` are merged.

Videos keep the order in which they first appear; captions keep file order. Blank lines are ignored.
Paragraph mode (default for DiDeMo and ActivityNet, as they are usually evaluated) joins each
video's sentences with a space into one query.

Unreadable rows (bad JSON, missing or non-string fields, empty text) raise
:class:`~hdvila.errors.InputFileError` naming the file and the line / row / entry, unless
``skip_bad_rows=True``: then the row is left out and described in ``Annotations.skipped_rows``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hdvila.errors import InputFileError

FORMATS = ("msrvtt", "didemo", "lsmdc", "activitynet", "jsonl")
PARAGRAPH_FORMATS = ("didemo", "activitynet")
# Frame sampling (num_frames, sample_rate, eval clips) per dataset, those of the HD-VILA paper's
# retrieval fine-tuning (Xue et al., CVPR 2022).
DATASET_SAMPLING = {"msrvtt": (7, 4, 4), "didemo": (11, 2, 8), "lsmdc": (11, 3, 4), "activitynet": (13, 4, 8)}
# Extensions a video id may carry (DiDeMo keeps those of the original uploads); lower case.
VIDEO_ID_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".mpe", ".wmv", ".m4v", ".3gp",
                       ".3g2", ".mts", ".m2ts", ".flv", ".ogv", ".qt", ".vob", ".asf", ".divx", ".dv")
CSV_DELIMITERS = (",", ";", "\t", "|")


@dataclass
class Annotations:
    """Captions grouped per video.

    video_ids: [V] unique ids, in order of first appearance. captions: [V] lists of >= 1 non-empty
    strings, ``captions[i]`` describing ``video_ids[i]``. ``paragraph``: each video has exactly one
    caption made by joining its sentences. ``skipped_rows``: messages for rows left out by
    ``skip_bad_rows``.
    """

    video_ids: list[str]
    captions: list[list[str]]
    paragraph: bool = False
    source: str = ""
    skipped_rows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.video_ids) != len(self.captions):
            raise ValueError(f"{len(self.video_ids)} video ids but {len(self.captions)} caption lists")
        if len(set(self.video_ids)) != len(self.video_ids):
            raise ValueError("video ids must be unique")
        for vid, caps in zip(self.video_ids, self.captions):
            if not caps or any(not isinstance(c, str) or not c.strip() for c in caps):
                raise ValueError(f"video {vid!r} needs one or more non-empty captions, got {caps!r}")

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def queries(self) -> tuple[list[str], list[int]]:
        """Flattened text queries [C] and the video index [C] of each (video order, then caption order)."""
        texts, owner = [], []
        for i, caps in enumerate(self.captions):
            texts.extend(caps)
            owner.extend([i] * len(caps))
        return texts, owner

    def as_paragraphs(self, sep: str = " ") -> "Annotations":
        """One query per video: its sentences (stripped) joined with ``sep``."""
        return dataclasses.replace(self, captions=[[sep.join(c.strip() for c in caps)] for caps in self.captions],
                                   paragraph=True, skipped_rows=list(self.skipped_rows))

    def subset(self, keep: Iterable[str]) -> "Annotations":
        """Only the videos whose id is in ``keep`` (order kept)."""
        keep = set(keep)
        idx = [i for i, v in enumerate(self.video_ids) if v in keep]
        return dataclasses.replace(self, video_ids=[self.video_ids[i] for i in idx],
                                   captions=[list(self.captions[i]) for i in idx], skipped_rows=list(self.skipped_rows))


class _Collector:
    """Accumulates (video id, caption) rows; bad rows raise or are recorded."""

    def __init__(self, path: Path, skip_bad_rows: bool) -> None:
        self.path, self.skip = path, skip_bad_rows
        self.by_video: dict[str, list[str]] = {}
        self.skipped: list[str] = []

    def bad(self, where: str, why: str) -> None:
        message = f"{self.path}, {where}: {why}"
        if not self.skip:
            raise InputFileError(message + " (fix the row, or pass --skip-bad to leave bad rows out)")
        self.skipped.append(message)

    def add(self, where: str, video: Any, texts: Any, *, video_field: str, text_field: str) -> None:
        if isinstance(video, int) and not isinstance(video, bool):
            video = str(video)
        if not isinstance(video, str) or not video.strip():
            return self.bad(where, f"missing or empty {video_field!r}")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            return self.bad(where, f"{text_field!r} must be a non-empty string or list of strings, got {texts!r}")
        for t in texts:
            if not isinstance(t, str):
                return self.bad(where, f"{text_field!r} holds a {type(t).__name__}, not a string")
            if not t.strip():
                return self.bad(where, f"empty {text_field!r} for video {video!r}")
        self.by_video.setdefault(video.strip(), []).extend(t.strip() for t in texts)

    def result(self, fmt: str) -> Annotations:
        if not self.by_video:
            extra = f" ({len(self.skipped)} bad rows skipped)" if self.skipped else ""
            raise InputFileError(f"{self.path}: no captions found{extra}; is it a {fmt} annotation file?")
        return Annotations(video_ids=list(self.by_video), captions=list(self.by_video.values()),
                           source=str(self.path), skipped_rows=self.skipped)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputFileError(f"{path}: annotation file not found.")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; pass the annotation file.")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text (byte {e.start}); is it an annotation file?") from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot read ({e.strerror}).") from None


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}).") from None


def _csv_delimiter(text: str) -> str:
    """The delimiter that splits the header line into ``video_id`` and ``sentence`` columns (',' if none does)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    for delimiter in CSV_DELIMITERS:
        names = {h.strip() for h in next(csv.reader([header], delimiter=delimiter), [])}
        if {"video_id", "sentence"} <= names:
            return delimiter
    return ","


def _msrvtt_csv(path: Path, text: str, rows: _Collector) -> None:
    delimiter = _csv_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    while header is not None and not any(h.strip() for h in header):
        header = next(reader, None)
    names = [h.strip() for h in header] if header else []
    if "video_id" not in names or "sentence" not in names:
        raise InputFileError(f"{path}: the MSR-VTT CSV needs a header with 'video_id' and 'sentence' columns "
                             f"(key,vid_key,video_id,sentence; delimiter ',', ';', tab or '|'); found {names}.")
    vcol, scol = names.index("video_id"), names.index("sentence")
    shown = {"\t": "tab"}.get(delimiter, repr(delimiter))
    for row_no, row in enumerate(reader, start=1):
        where = f"line {reader.line_num} (row {row_no})"
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(names):
            rows.bad(where, f"{len(row)} fields but the header has {len(names)} (an unquoted {shown}?)")
            continue
        rows.add(where, row[vcol], row[scol], video_field="video_id", text_field="sentence")


def _msrvtt_json(path: Path, text: str, rows: _Collector, split: str | None) -> None:
    data = _load_json(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise InputFileError(f"{path}: an MSR-VTT JSON needs a top-level object with a 'sentences' list.")
    wanted = None
    if split is not None:
        videos = data.get("videos")
        if not isinstance(videos, list):
            raise InputFileError(f"{path}: split {split!r} asked for, but there is no 'videos' list with splits.")
        wanted = {v.get("video_id") for v in videos if isinstance(v, dict) and v.get("split") == split}
        if not wanted:
            found = sorted({str(v.get("split")) for v in videos if isinstance(v, dict)})
            raise InputFileError(f"{path}: no videos of split {split!r} (splits in the file: {found}).")
    for i, s in enumerate(data["sentences"]):
        where = f"sentences[{i}]"
        if not isinstance(s, dict):
            rows.bad(where, "not an object")
            continue
        if wanted is not None and s.get("video_id") not in wanted:
            continue
        rows.add(where, s.get("video_id"), s.get("caption"), video_field="video_id", text_field="caption")


def _didemo(path: Path, text: str, rows: _Collector) -> None:
    data = _load_json(path, text)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: a DiDeMo file is a JSON list of {{video, description, ...}} objects.")
    for i, item in enumerate(data):
        where = f"entry {i}"
        if not isinstance(item, dict):
            rows.bad(where, "not an object")
            continue
        if "annotation_id" in item:
            where += f" (annotation_id {item['annotation_id']})"
        rows.add(where, item.get("video"), item.get("description"), video_field="video", text_field="description")


def _activitynet(path: Path, text: str, rows: _Collector) -> None:
    data = _load_json(path, text)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: an ActivityNet Captions file is a JSON object "
                             f'{{"v_<id>": {{"sentences": [...], ...}}}}.')
    for key, item in data.items():
        where = f"entry {key!r}"
        if not isinstance(item, dict):
            rows.bad(where, "not an object")
            continue
        sentences = item.get("sentences")
        if sentences is None:
            rows.bad(where, "no 'sentences'")
            continue
        rows.add(where, key, sentences, video_field="video key", text_field="sentences")


def _lsmdc(path: Path, text: str, rows: _Collector) -> None:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        where = f"line {line_no}"
        if len(cols) < 6:
            rows.bad(where, f"{len(cols)} tab-separated column(s); LSMDC lines have 6 (CLIP_ID ... SENTENCE)")
            continue
        rows.add(where, cols[0].strip(), " ".join(c.strip() for c in cols[5:]).strip(),
                 video_field="CLIP_ID", text_field="SENTENCE")


def _jsonl(path: Path, text: str, rows: _Collector) -> None:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {line_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rows.bad(where, f"not valid JSON ({e.msg})")
            continue
        if not isinstance(obj, dict):
            rows.bad(where, "not a JSON object")
            continue
        if "text" not in obj:
            rows.bad(where, "no 'text' field")
            continue
        rows.add(where, obj.get("clip_id"), obj["text"], video_field="clip_id", text_field="text")


def load_annotations(path: str | os.PathLike, fmt: str, *, paragraph: bool | None = None,
                     split: str | None = None, skip_bad_rows: bool = False) -> Annotations:
    """Read an annotation file of format ``fmt`` (one of :data:`FORMATS`).

    ``paragraph``: join each video's sentences into one query; ``None`` = the format's usual
    protocol (on for didemo and activitynet). ``split``: MSR-VTT JSON only, keep that split's videos.
    """
    if fmt not in FORMATS:
        raise InputFileError(f"unknown annotation format {fmt!r}; choose from {', '.join(FORMATS)}.")
    if split is not None and fmt != "msrvtt":
        raise InputFileError(f"--split applies to the MSR-VTT JSON only, not to {fmt}.")
    path = Path(path)
    text = _read_text(path)
    rows = _Collector(path, skip_bad_rows)
    if fmt == "msrvtt":
        is_json = path.suffix.lower() == ".json" or (path.suffix.lower() != ".csv" and text.lstrip()[:1] == "{")
        if is_json:
            _msrvtt_json(path, text, rows, split)
        else:
            if split is not None:
                raise InputFileError("--split applies to the MSR-VTT JSON only; the CSV is already one split.")
            _msrvtt_csv(path, text, rows)
    else:
        {"didemo": _didemo, "activitynet": _activitynet, "lsmdc": _lsmdc, "jsonl": _jsonl}[fmt](path, text, rows)
    ann = rows.result(fmt)
    if paragraph is None:
        paragraph = fmt in PARAGRAPH_FORMATS
    return ann.as_paragraphs() if paragraph else ann


def _id_key(video_id: str) -> str:
    """``video_id`` without a video extension (:data:`VIDEO_ID_EXTENSIONS`), for matching lists to files."""
    stem, ext = os.path.splitext(video_id)
    return stem if ext.lower() in VIDEO_ID_EXTENSIONS else video_id


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Video ids of a list file, one per line (surrounding spaces and blank lines ignored; file order,
    duplicates dropped)."""
    path = Path(path)
    text = _read_text(path)
    ids = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not ids:
        raise InputFileError(f"{path}: the video id list is empty; it needs one video id per line.")
    return ids


def restrict_to_id_list(ann: Annotations, path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Annotations:
    """Only the videos of ``ann`` named in the list file ``path`` (:func:`read_id_list`), in annotation order.

    A listed id matches an annotation id exactly or, failing that, up to a video extension
    (``abc`` matches ``abc.mov`` and the other way round). Listed ids without captions raise
    :class:`~hdvila.errors.InputFileError` unless ``skip_bad_rows``: then they are left out and
    described in ``skipped_rows``.
    """
    listed = read_id_list(path)
    exact = set(ann.video_ids)
    by_key: dict[str, list[str]] = {}
    for vid in ann.video_ids:
        by_key.setdefault(_id_key(vid), []).append(vid)
    keep: set[str] = set()
    unmatched: list[str] = []
    for vid in listed:
        hits = [vid] if vid in exact else by_key.get(_id_key(vid), [])
        keep.update(hits)
        if not hits:
            unmatched.append(vid)
    if unmatched and not skip_bad_rows:
        shown = ", ".join(unmatched[:10]) + (f", ... ({len(unmatched)} in all)" if len(unmatched) > 10 else "")
        raise InputFileError(f"{path}: {len(unmatched)} of {len(listed)} listed videos have no captions in "
                             f"{ann.source or 'the annotations'}: {shown}. Check that the list belongs to this "
                             f"annotation file, or pass --skip-bad to leave them out.")
    if not keep:
        raise InputFileError(f"{path}: none of the {len(listed)} listed videos is in "
                             f"{ann.source or 'the annotations'}.")
    out = ann.subset(keep)
    out.skipped_rows.extend(f"{path}: listed video {vid!r} has no captions" for vid in unmatched)
    return out
