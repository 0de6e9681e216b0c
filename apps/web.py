"""The Gradio web UI (``hdvila app``): text-guided editing, text-conditioned super-resolution, video
and text-to-video search.

Tabs and their API endpoints (stable names, for ``gradio_client`` and scripts):

* **Edit** (``/edit``): a frame, a prompt, the method (``mapper``: one pass; ``optimize``: StyleCLIP's
  latent optimisation with HD-VILA), strength, steps and projector refinement steps in; a before/after
  slider (the input after the centre-crop/resize policy | the edit), the reconstruction, the edit as
  a PNG file and the settings with the inversion PSNR out
  (:class:`generation.editing.pipeline_edit.EditPipeline`, the bundled ``checkpoints/edit-demo64``
  unless ``--edit-model`` is given; ``--generator`` replaces its generator).
* **Upscale** (``/upscale``): a low-resolution frame and an optional caption in; a before/after
  slider (bicubic vs super-resolved, both at the model's output size), the result as a PNG file and
  the input-policy notes out (:class:`generation.superres.pipeline_sr.SRPipeline`, the bundled
  ``checkpoints/sr-demo64-x4`` unless ``--sr-model`` is given). Examples are demo-domain renders
  downscaled to the model's input size; their outputs are cached on first use.
* **Video** (``/video``): a short clip (at most ``VIDEO_MAX_FRAMES`` frames, or any clip with
  "Only the first VIDEO_MAX_FRAMES frames" ticked), the task (``edit``: one edit for the whole clip,
  latents smoothed over time; ``upscale``: every frame super-resolved) and a prompt/caption in; the
  result as an mp4 that plays in the page and downloads, and a summary out.
* **Align faces** (a switch on the Edit, Upscale and Video tabs, off by default; the ``align_faces``
  argument of ``/edit``, ``/upscale`` and ``/video``): for real photos and an FFHQ-like model, the
  largest face is detected, aligned as FFHQ at the model's size, edited or super-resolved, and pasted
  back into the whole frame (:mod:`generation.faces.pipeline`; a clip follows one tracked face); the
  slider shows the whole frame before and after, and a gallery (the last output) the aligned crop,
  its edit and, for a clip, the pasted-back middle frame. An image without a face is a one-line error.
* **Search** (``/search``): a text query in; the best-matching videos of the ``--videos`` folder (the
  demo videos, rendered on first use, by default) with their cosine scores, playable in the page
  (:func:`hdvila.retrieval.search.search_videos` over the on-disk embedding cache, so each video is
  encoded once).

Serving policy: the server binds 127.0.0.1:7860 unless told otherwise and shares nothing unless
``--share`` is given. The compiled StyleGAN2 ops build in a background thread at start-up while the
reference ops serve, so no request waits for a compiler. Models load lazily, each at most once
(:class:`Once`), and in a background thread right after the server is up, so the page is ready
within seconds. Requests go through a queue with a concurrency limit; uploads are capped
(``max_file_size``) and images over 40 MP are refused before decoding.

Messages: a user error (an empty, corrupt or non-image upload, a decompression bomb, one larger than
the model's output, a clip over the limit, an empty query, a field's value that is not a number in its
range or not text, NaN and None included) comes back as a ``gr.Error`` with the library's one-line
message. A ``--sr-model`` / ``--edit-model`` folder that is not a pipeline leaves the other tabs serving:
its tab shows one line saying why (also printed at launch), and a request there fails with it.
Image inputs are :class:`ImageUpload`, which hands the uploaded file to
the action undecoded, so :func:`hdvila.imageio.load_image` judges it (not gradio's preprocessing).
Messages name an upload by its file name, never by the server's temporary path, and advise only
what the page offers. Notes (the input policy's, the prompt's) come back in the pipelines' return
values, never through Python's process-wide ``warnings``, so two requests served at once each get
exactly their own.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from hdvila.errors import InputFileError, TextInputError, UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
CONCURRENCY_LIMIT = 2
MAX_FILE_SIZE = "50mb"
DEMO_VIDEOS = 6
EXAMPLES = 4
SEARCH_TOP_MAX = 20
CSS = ".pixelated img, .pixelated canvas { image-rendering: pixelated; }"  # 16-64 px frames shown enlarged, not blurred
VIDEO_MAX_FRAMES = 300  # the Video tab's length limit (the batch CLI takes --max-frames)
FIRST_FRAMES_LABEL = f"Only the first {VIDEO_MAX_FRAMES} frames"  # the Video tab's box for longer clips
EDIT_STEPS_MAX = 500
FACES_LABEL = "Align faces"  # the switch on the Edit, Upscale and Video tabs
REFINE_INFO = ("0: the encoder alone, fastest. Each step adds about one generator pass forward and back, and "
               "the frame's shape and pattern survive the inversion more often: 25-50 is a good start")
FACES_INFO = "real photos: the largest face is aligned as FFHQ, processed and pasted back into the whole frame"
FACES_MODE = "largest"


class Once:
    """A value built by ``loader`` on first :meth:`get`, at most once even under concurrent calls
    (a failed load is not remembered, so the next call tries again). ``loads`` counts the loads."""

    def __init__(self, loader: Callable[[], Any]) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._value: Any = None
        self._done = False
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self._done

    def get(self) -> Any:
        if self._done:
            return self._value
        with self._lock:
            if not self._done:
                self.loads += 1
                self._value = self._loader()
                self._done = True
        return self._value


def default_cache_dir() -> Path:
    """Where the app keeps its renders and outputs: ``outputs/web`` of the repository when it can be
    written, else a folder in the system's temp directory."""
    from hdvila.paths import REPO_ROOT

    for candidate in (REPO_ROOT / "outputs" / "web", Path(tempfile.gettempdir()) / "hdvila-web"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return candidate
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="hdvila-web-"))


_SR_ACCEPTS = "an SR pipeline folder (pipeline_index.json and one folder per component)"
_EDIT_ACCEPTS = "an EditPipeline folder (pipeline_index.json and one folder per component)"


def _pipeline_folder_error(path: Path, option: str, accepts: str):
    """A :class:`~hdvila.errors.CheckpointError` saying why ``path`` (given as ``option``) is not a
    pipeline folder, or None when it has its ``pipeline_index.json`` (the loader judges the rest)."""
    from hdvila.errors import CheckpointError

    if not path.is_dir():
        return CheckpointError(f"{option} {path}: not a folder. Pass {accepts}.")
    if not (path / "pipeline_index.json").is_file():
        return CheckpointError(f"{option} {path}: no pipeline_index.json in the folder, so it is not a saved "
                               f"pipeline. Pass {accepts}.")
    return None


class AppState:
    """The app's models, folders and caches; every model is a :class:`Once`."""

    def __init__(self, sr_model: str | None = None, hdvila: str | None = None, videos: str | None = None,
                 cache_dir: str | os.PathLike | None = None, embedding_cache: str | os.PathLike | None = None,
                 device: str | None = None, edit_model: str | None = None, generator: str | None = None) -> None:
        from hdvila.errors import CheckpointError
        from hdvila.paths import resolve_model_path

        # Paths are checked now, so a wrong option fails at start-up with one line, not at the first request.
        # A folder that exists but is not a pipeline (no pipeline_index.json) leaves the other tabs working:
        # its tab says so in one line (``sr_error`` / ``edit_error``), and so does a request there.
        self.sr_path = resolve_model_path(sr_model, "sr-demo64-x4", option="--sr-model", marker="pipeline_index.json",
                                          accepts=_SR_ACCEPTS)
        self.sr_error: CheckpointError | None = _pipeline_folder_error(self.sr_path, "--sr-model", _SR_ACCEPTS)
        self.hdvila_path = resolve_model_path(hdvila, "hdvila-mini", option="--hdvila", accepts=(
            "an HD-VILA model folder with config.json and model.safetensors (e.g. from `hdvila convert hdvila`)"))
        # A missing *bundled* edit pipeline leaves the other tabs working; the Edit tab reports it.
        self.edit_error: CheckpointError | None = None
        self.edit_path: Path | None = None
        try:
            self.edit_path = resolve_model_path(edit_model, "edit-demo64", option="--edit-model",
                                                marker="pipeline_index.json", accepts=_EDIT_ACCEPTS)
        except CheckpointError as e:
            if edit_model:
                raise
            self.edit_error = e
        else:
            self.edit_error = _pipeline_folder_error(self.edit_path, "--edit-model", _EDIT_ACCEPTS)
        if generator is not None and not Path(generator).exists():
            raise CheckpointError(f"--generator {generator}: not found. "
                                  "Pass a StyleGAN2 model folder or an NVlabs .pkl.")
        self.generator_arg = generator
        if videos is not None and not Path(videos).is_dir():
            raise InputFileError(f"--videos {videos}: not a folder. Pass a folder of videos to search.")
        self.videos_arg = videos
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.embedding_cache = embedding_cache
        self.device = device
        self.unavailable: dict[str, str] = {}  # tab -> why its model cannot load (found while building the page)
        self.sr = Once(self._load_sr)
        self.edit = Once(self._load_edit)
        self.edit_examples = Once(self._render_edit_examples)
        self.search_model = Once(self._load_search_model)
        self.videos = Once(self._videos_dir)
        self.examples = Once(self._render_examples)

    # ---- loaders ------------------------------------------------------------------------------
    def _load_sr(self):
        from generation.superres.pipeline_sr import SRPipeline
        from hdvila.device import get_device

        if self.sr_error is not None:
            raise self.sr_error
        return SRPipeline.from_pretrained(self.sr_path).to(get_device(self.device))

    def _load_edit(self):
        from apps.pipelines import load_edit_pipeline

        if self.edit_error is not None:
            raise self.edit_error
        return load_edit_pipeline(str(self.edit_path), self.generator_arg, None, self.device)

    def _load_search_model(self):
        from hdvila.retrieval.evaluate import load_model_and_processor
        from hdvila.retrieval.index import default_cache_dir as embeddings_dir, model_device_dtype, model_dir_id

        model, processor, model_dir = load_model_and_processor(self.hdvila_path)
        device, dtype = model_device_dtype(model, self.device or "auto", "auto")
        root = Path(self.embedding_cache) if self.embedding_cache is not None else embeddings_dir()
        return {"model": model, "processor": processor, "device": device, "dtype": dtype, "cache_dir": root,
                "model_id": model_dir_id(model_dir, root)}

    def _videos_dir(self) -> Path:
        """The ``--videos`` folder, or the demo videos (rendered once into the cache folder)."""
        if self.videos_arg is not None:
            return Path(self.videos_arg)
        from hdvila.demo.export import export_demo_data

        out = self.cache_dir / f"demo-videos-{DEMO_VIDEOS}"
        if not (out / "hdvila_test.jsonl").is_file():  # annotations are written last: their presence means complete
            export_demo_data(out, split="test", videos=DEMO_VIDEOS, images=0)
        return out / "videos"

    @staticmethod
    def _cached_examples(folder: Path, render: Callable[[Path], list[list[str]]]) -> list[list[str]]:
        """[[png path, text]] from ``folder/examples.json``, or made once by ``render(folder)`` (which
        saves the images and returns [[file name, text]]); the index is written last."""
        import json

        from hdvila.atomic import atomic_write_text

        index = folder / "examples.json"
        if index.is_file():
            rows = json.loads(index.read_text())
            if all((folder / name).is_file() for name, _ in rows):
                return [[str(folder / name), text] for name, text in rows]
        rows = render(folder)
        atomic_write_text(index, json.dumps(rows))
        return [[str(folder / name), text] for name, text in rows]

    def _render_examples(self) -> list[list[str]]:
        """[[LR png path, caption]]: demo-domain renders at the model's output size, downscaled to its
        input size the way the model was trained (:func:`generation.superres.losses.downsample`)."""
        import json

        from generation.superres.losses import downsample
        from hdvila.demo.dataset import DemoImageDataset
        from hdvila.errors import CheckpointError
        from hdvila.imageio import save_image

        if self.sr_error is not None:
            raise self.sr_error
        config = self.sr_path / "sr_model" / "config.json"
        try:
            cfg = json.loads(config.read_text())
            out_res, scale = int(cfg["out_resolution"]), int(cfg["scale"])
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"--sr-model {self.sr_path}: {config.relative_to(self.sr_path)} is missing or "
                                  f"unreadable ({type(e).__name__}); pass {_SR_ACCEPTS}.") from None

        def render(folder: Path) -> list[list[str]]:
            ds, rows = DemoImageDataset("test", EXAMPLES, resolution=out_res), []
            for i in range(EXAMPLES):
                item = ds[i]
                save_image(downsample(item["image"][None], scale)[0], folder / f"example_{i}.png")
                rows.append([f"example_{i}.png", item["caption"]])
            return rows

        return self._cached_examples(self.cache_dir / f"examples-{out_res}-x{scale}", render)

    def _render_edit_examples(self) -> list[list[str]]:
        """[[png path, prompt]]: demo-domain test renders at the edit generator's resolution, each with
        a prompt that changes one attribute (training wording)."""
        import json

        import numpy as np

        from generation.presets import demo_vocabulary
        from hdvila.demo.dataset import DemoImageDataset
        from hdvila.errors import CheckpointError
        from hdvila.imageio import save_image

        if self.edit_error is not None:
            raise self.edit_error
        res = 64
        config = self.edit_path / "generator" / "config.json" if self.edit_path is not None else None
        if config is not None and config.is_file():
            try:
                res = int(json.loads(config.read_text()).get("img_resolution", res))
            except (OSError, ValueError, TypeError, AttributeError) as e:
                raise CheckpointError(f"--edit-model {self.edit_path}: generator/config.json is unreadable "
                                      f"({type(e).__name__}); pass {_EDIT_ACCEPTS}.") from None

        def render(folder: Path) -> list[list[str]]:
            ds, rng, rows = DemoImageDataset("test", EXAMPLES, resolution=res), np.random.default_rng(0), []
            vocabulary = demo_vocabulary()
            for i in range(EXAMPLES):
                attribute = vocabulary.editable[i % len(vocabulary.editable)]
                _, value = vocabulary.sample_edit({attribute: getattr(ds.spec(i), attribute)}, rng, attribute)
                save_image(ds[i]["image"], folder / f"example_{i}.png")
                rows.append([f"example_{i}.png", vocabulary.edit_prompt(attribute, value, rng)])
            return rows

        return self._cached_examples(self.cache_dir / f"edit-examples-{res}", render)

    def preload(self) -> None:
        """Load everything (for a background thread after the server is up); errors are left for
        the first request to report. The edit model loads first at normal priority (a first Edit
        click waits on it); the rest (rendering the demo videos for Search) yields the CPU to requests."""
        for i, once in enumerate((self.edit, self.sr, self.search_model, self.videos)):
            if i == 1:
                try:  # Linux: the niceness of this thread only
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
                except (AttributeError, OSError):
                    pass
            try:
                once.get()
            except Exception:  # noqa: BLE001 - surfaced again, as a gr.Error, by the request that needs it
                pass

    def new_output_dir(self) -> Path:
        d = self.cache_dir / "results" / uuid.uuid4().hex[:12]
        d.mkdir(parents=True, exist_ok=True)
        return d


# ---- actions --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_gradio_stub_file():
    """Defining a gradio component class makes gradio's metaclass write a ``.pyi`` stub of the
    module beside it (tooling for custom-component packages), here ``apps/web.pyi``; this keeps it
    from writing into the package."""
    from gradio import component_meta

    write = getattr(component_meta, "create_or_modify_pyi", None)
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if write is not None:
            component_meta.create_or_modify_pyi = write


with _no_gradio_stub_file():
    class ImageUpload(gr.Image):
        """``gr.Image`` in the page (the same front end: upload, clipboard paste, preview) whose
        preprocessing hands the uploaded file's path to the action without opening it. ``gr.Image``
        decodes the upload first, so an empty file, a non-image or a decompression bomb failed there
        with gradio's "Could not preprocess input component"; here :func:`hdvila.imageio.load_image`
        reads it and says what is wrong with it. A pasted image that arrives as a data URL is written
        to gradio's cache as it is, still undecoded."""

        is_template = True  # the front end renders it as the gr.Image it is
        # (no __init__ of its own: gradio reads the front end's props from gr.Image.__init__'s signature)

        def preprocess(self, payload) -> str | None:
            """The upload's file path (or None when there is none)."""
            from gradio.processing_utils import save_base64_to_cache

            if payload is None:
                return None
            if payload.url and payload.url.startswith("data:"):
                return save_base64_to_cache(payload.url, self.GRADIO_CACHE, file_name=None)
            if not payload.path:
                raise gr.Error("The upload did not arrive; upload the image again.", print_exception=False)
            return payload.path


def _public_message(message: str, uploads: tuple[str, ...] = ()) -> str:
    """``message`` with each upload's server path (as given and resolved) replaced by its file name,
    and any other path in gradio's upload folder likewise: the user knows the file by its name."""
    from gradio.utils import get_upload_folder

    for upload in uploads:
        for form in sorted({str(upload), str(Path(upload).resolve())}, key=len, reverse=True):
            message = message.replace(form, Path(upload).name)
    for root in {get_upload_folder(), str(Path(get_upload_folder()).resolve())}:
        message = re.sub(re.escape(root.rstrip(os.sep)) + r"/(?:[^/\s'\"]+/)*([^/\s'\"]+)", r"\1", message)
    return message


def _user_errors(*, upload: bool) -> Callable[[Callable], Callable]:
    """Turn the library's :class:`UserError` into a ``gr.Error`` with the same one-line message, an
    upload named by its file name (:func:`_public_message`). ``upload``: the action's first argument
    is an uploaded file's path."""
    import functools

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as e:
                uploads = (args[0],) if upload and args and isinstance(args[0], str) and args[0] else ()
                raise gr.Error(_public_message(str(e), uploads), print_exception=False) from None

        return wrapper

    return decorate


def make_upscale(state: AppState) -> Callable:
    @_user_errors(upload=True)
    def upscale(image: str | None, caption: str | None, align_faces: bool = False,
                progress=gr.Progress(track_tqdm=True)):
        """LR image file + optional caption (+ the "Align faces" switch) -> ((bicubic, SR) images, SR png
        path, input-policy notes, [(aligned face, its super-resolution)] with faces, else [])."""
        from generation.superres.losses import upsample_bicubic
        from hdvila.imageio import load_image, save_image
        from hdvila.tensors import to_pil

        if not image:
            raise InputFileError("Upload a low-resolution image first (or pick an example).")
        prompt = _text(caption, "caption") or None
        name = Path(image).name
        pil = load_image(image, name=name)  # the 40 MP limit is checked from the header, before decoding
        progress(0, desc="loading the super-resolution model")
        pipe = state.sr.get()
        scale = pipe.sr_model.config.scale
        out = pipe(pil, prompt=prompt, labels=[name], faces=FACES_MODE if align_faces else None)
        sr = out.images[0]
        path = save_image(sr, state.new_output_dir() / f"{Path(name).stem}_sr_x{scale}.png")
        captioned = "caption: " + prompt if prompt else "no caption"
        if align_faces:
            from generation.faces.pipeline import upscale_frame
            from generation.pipeline_utils import image_to_tensor

            bicubic = to_pil(upscale_frame(image_to_tensor(pil, name), scale))
            records = out.faces[0]
            notes = (f"{len(records)} face aligned at {pipe.lr_resolution}x{pipe.lr_resolution}, super-resolved to "
                     f"{pipe.out_resolution}x{pipe.out_resolution} and pasted into the x{scale} bicubic enlargement "
                     f"({sr.size[0]}x{sr.size[1]}), " + captioned)
            gallery = _face_gallery(records, "super-resolved")
        else:
            bicubic = to_pil(upsample_bicubic(out.lr_images[:1], scale)[0])
            notes = out.notes[0] or (f"{pipe.lr_resolution}x{pipe.lr_resolution} -> {pipe.out_resolution}x"
                                     f"{pipe.out_resolution}, " + captioned)
            gallery = []
        return (bicubic, sr), str(path), notes, gallery

    return upscale


def _face_gallery(records, what: str) -> list[tuple[Any, str]]:
    """[(aligned crop, caption), (its output, caption)] per face record, for the "Aligned faces" gallery."""
    from hdvila.tensors import to_pil

    items = []
    for r in records:
        size = r.aligned.crop.shape[-1]
        items += [(to_pil(r.aligned.crop), f"face {r.index + 1}: aligned ({size}x{size})"),
                  (to_pil(r.output), f"face {r.index + 1}: {what} ({r.output.shape[-1]}x{r.output.shape[-1]})")]
    return items


def _face_settings(records) -> list[dict[str, Any]]:
    """Each face's box, landmarks (image px, rounded) and inversion PSNR, for the settings panel."""
    return [{"box": [round(v, 1) for v in r.aligned.box],
             "landmarks": [[round(v, 1) for v in p] for p in r.aligned.landmarks.tolist()],
             **({"inversion_psnr_db": round(r.inversion_psnr, 2)} if r.inversion_psnr is not None else {})}
            for r in records]


def _number_in(value: Any, lo: float, hi: float, name: str, *, whole: bool = False) -> float:
    """``value`` as a finite float in [lo, hi]; else a :class:`UserError` naming the field ``name`` (None,
    NaN, infinities, text and booleans included, which ``float()``/``int()`` would pass or crash on)."""
    kind = "a whole number" if whole else "a number"
    shown = f"{value!r}" if isinstance(value, str) or value is None or isinstance(value, bool) else f"{value}"
    problem = f"{name} must be {kind} from {lo:g} to {hi:g}, got {shown[:40]}; set it within that range."
    if value is None or isinstance(value, bool):
        raise UserError(problem)
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(problem) from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise UserError(problem)
    return v


def _text(value: Any, name: str) -> str:
    """A text field's value stripped ("" for None); a :class:`UserError` naming the field if it is not text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, got {type(value).__name__} {str(value)[:40]!r}; type it as text.")
    return value.strip()


def _int_in(value: Any, lo: int, hi: int, name: str) -> int:
    """``value`` as an int in [lo, hi] (a fractional value is truncated, as before); else a :class:`UserError`
    naming the field ``name``."""
    return int(_number_in(value, lo, hi, name, whole=True))


def _method_strength(method: Any, strength: Any) -> tuple[str, float]:
    """The edit method and strength checked before any upload is decoded or model loaded: a
    :class:`UserError` naming the field otherwise."""
    from generation.editing.pipeline_edit import METHODS, STRENGTH_RANGE

    if method not in METHODS:
        raise UserError(f"method must be {' or '.join(repr(m) for m in METHODS)}, got {method!r}; pick one of them.")
    return method, _number_in(strength, *STRENGTH_RANGE, "strength")


def make_edit(state: AppState) -> Callable:
    @_user_errors(upload=True)
    def edit(image: str | None, prompt: str | None, method: str = "mapper", strength: float = 1.0,
             steps: float = 100, refine_steps: float = 0, align_faces: bool = False,
             progress=gr.Progress(track_tqdm=True)):
        """Image file + prompt + settings -> ((input, edit) images, reconstruction, edit png path,
        settings dict with the inversion PSNR, the input-policy ``note`` of the image and the prompt's
        notes as ``warnings``, each None when there is none, and [] (the faces gallery). Safe to run
        concurrently: the notes are this call's own return values. With ``align_faces``: the whole
        frame before and after (the face pasted back), the face's reconstruction, its record in the
        settings (``faces``) and [(aligned face, its edit)] last."""
        from hdvila.imageio import load_image, save_image
        from hdvila.tensors import to_pil

        if not image:
            raise InputFileError("Upload a frame first (or pick an example).")
        method, strength = _method_strength(method, strength)
        steps = _int_in(steps, 1, EDIT_STEPS_MAX, "steps")
        refine_steps = _int_in(refine_steps, 0, EDIT_STEPS_MAX, "refine steps")
        prompt = _text(prompt, "prompt")
        name = Path(image).name
        pil = load_image(image, name=name)  # the 40 MP limit is checked from the header, before decoding
        progress(0, desc="loading the edit model")
        pipe = state.edit.get()
        out = pipe(pil, prompt, method=method, strength=float(strength), steps=steps,
                   refine_steps=refine_steps, labels=[name], faces=FACES_MODE if align_faces else None)
        before = pil if align_faces else to_pil(out.inputs[0])
        edited = out.images[0]
        path = save_image(edited, state.new_output_dir() / f"{Path(name).stem}_edit.png")
        settings = {"prompt": prompt, "method": method, "strength": float(strength),
                    "steps": steps if method == "optimize" else None, "refine_steps": refine_steps,
                    "inversion_psnr_db": round(float(out.inversion_psnr[0]), 2),
                    "resolution": pipe.resolution, "note": out.notes[0] or None,
                    "warnings": list(out.prompt_notes) or None}
        gallery = []
        if align_faces:
            settings["faces"] = _face_settings(out.faces[0])
            gallery = _face_gallery(out.faces[0], "edited")
        return (before, edited), to_pil(out.reconstructions[0]), str(path), settings, gallery

    return edit


def make_video(state: AppState) -> Callable:
    @_user_errors(upload=True)
    def video(clip: str | None, task: str = "edit", prompt: str | None = "", method: str = "mapper",
              strength: float = 1.0, first_frames_only: bool = False, align_faces: bool = False,
              progress=gr.Progress(track_tqdm=True)):
        """Video file + task + prompt -> (mp4 path to play, the same path to download, summary, []). A clip
        over ``VIDEO_MAX_FRAMES`` frames is refused unless ``first_frames_only`` (the tab's
        :data:`FIRST_FRAMES_LABEL` box), which processes its first ``VIDEO_MAX_FRAMES`` frames. With
        ``align_faces``: one tracked face, processed and pasted back into every full-size frame; the
        last output is then the middle frame's aligned face, its edit or super-resolution, and the
        pasted-back frame."""
        from apps.pipelines import edit_frames_to_video, upscale_faces_to_video, upscale_frames_to_video
        from hdvila.tensors import to_pil
        from hdvila.videoio import read_all_frames

        if not clip:
            raise InputFileError("Upload a short video first.")
        if task not in ("edit", "upscale"):
            raise UserError(f"task must be 'edit' or 'upscale', got {task!r}; pick one of them.")
        if task == "edit":
            method, strength = _method_strength(method, strength)
        prompt = _text(prompt, "prompt")
        src = Path(clip)
        name = src.name
        read_notes: list[str] = []  # this request's own (a truncated file's), never process-wide warnings
        frames, fps = read_all_frames(src, max_frames=VIDEO_MAX_FRAMES + 1, notes=read_notes)  # one more: longer?
        if len(frames) == 0:
            raise InputFileError(f"{name}: the video has no frames.")
        cut = len(frames) > VIDEO_MAX_FRAMES
        if cut and not first_frames_only:
            raise InputFileError(f"{name}: the video is longer than the limit of {VIDEO_MAX_FRAMES} frames; trim it "
                                 f"to {VIDEO_MAX_FRAMES} frames or fewer, or tick \"{FIRST_FRAMES_LABEL}\" to "
                                 f"{task} just its start.")
        frames = frames[:VIDEO_MAX_FRAMES]
        which = f"the first {len(frames)} frames" if cut else f"{len(frames)} frames"
        dst = state.new_output_dir() / f"{src.stem}_{task}.mp4"
        if task == "edit":
            progress(0, desc="loading the edit model")
            pipe = state.edit.get()
            r = edit_frames_to_video(pipe, frames, fps, dst, prompt, method=method, strength=float(strength), steps=100,
                                     faces=FACES_MODE if align_faces else None, name=name, audio_from=src)
            summary = (f"edited {which} as one clip ({method}, strength {float(strength):g}); "
                       f"mean inversion PSNR {r['inversion_psnr']:.2f} dB" + (f"; {r['note']}" if r["note"] else "")
                       + "".join(f"; {n}" for n in r["prompt_notes"]))
        else:
            progress(0, desc="loading the super-resolution model")
            pipe = state.sr.get()
            summary = f"upscaled {'every frame' if not cut else which} x{pipe.sr_model.config.scale} "
            captioned = f"with the caption: {prompt}" if prompt else "without a caption"
            if align_faces:
                r = upscale_faces_to_video(pipe, frames, fps, dst, prompt or None, faces=FACES_MODE, name=name,
                                           audio_from=src)
                summary += "(bicubic) with the face super-resolved " + captioned
            else:
                note = upscale_frames_to_video(pipe, frames, fps, dst, prompt or None, audio_from=src)
                summary += captioned + (f"; {note.split(': ', 1)[-1]}" if note else "")
        summary += "".join(f"; {n.replace(str(src), name)}" for n in read_notes)
        if not align_faces:
            return str(dst), str(dst), summary, []
        found = sum(a.box is not None for a in r["faces"].aligned)
        summary += (f"; one face tracked (found in {found} of {len(frames)} frames, landmarks smoothed over time), "
                    f"aligned, {'edited' if task == 'edit' else 'super-resolved'} and pasted back into every frame")
        p = r["preview"]
        gallery = [(to_pil(p["crop"]), f"frame {p['frame']}: aligned face"),
                   (to_pil(p["output"]), f"frame {p['frame']}: {'edited' if task == 'edit' else 'super-resolved'}"),
                   (to_pil(p["pasted"]), f"frame {p['frame']}: pasted back")]
        return str(dst), str(dst), summary, gallery

    return video


def _name_paths(text: str, folder: Path, where: str) -> str:
    """``text`` with the files of ``folder`` named relative to it and the folder itself as ``where``."""
    for form in sorted({str(folder), str(folder.resolve())}, key=len, reverse=True):
        text = text.replace(form + os.sep, "").replace(form, where)
    return text


def make_search(state: AppState) -> Callable:
    @_user_errors(upload=False)
    def search(query: str | None, top: float = 5, progress=gr.Progress(track_tqdm=True)):
        """Text query -> (gallery [(video path, caption)], table [[rank, score, file]], summary); the
        summary and messages name the videos relative to the searched folder, and the folder as the
        ``--videos`` option gave it (or "the demo videos"), not by the server's cache path."""
        from hdvila.retrieval.search import search_videos

        query = _text(query, "query")
        if not query:
            raise TextInputError("The search query is empty; describe the video you are looking for.")
        top = _int_in(top, 1, SEARCH_TOP_MAX, "top")
        progress(0, desc="loading the HD-VILA model")
        m = state.search_model.get()
        progress(0, desc="preparing the videos")
        folder = state.videos.get()
        where = state.videos_arg or "the demo videos"
        try:
            out = search_videos(m["model"], m["processor"], folder, query, top=top, cache_dir=m["cache_dir"],
                                model_id=m["model_id"], device=m["device"], dtype=m["dtype"], workers=0, progress=True)
        except UserError as e:
            raise type(e)(_name_paths(str(e), Path(folder), where)) from None
        gallery, table = [], []
        for r in out["results"]:
            rel = os.path.relpath(r["file"], folder)
            gallery.append((r["file"], f"#{r['rank']}  {r['score']:.3f}  {rel}"))
            table.append([r["rank"], round(r["score"], 4), rel])
        summary = f"searched {out['num_videos']} videos in {where}"
        if out["skipped"]:
            summary += f"; skipped {len(out['skipped'])} unreadable: " + "; ".join(
                _name_paths(s["reason"], Path(folder), where) for s in out["skipped"])
        return gallery, table, summary

    return search


# ---- the app --------------------------------------------------------------------------------------
def _examples_or_note(state: AppState, error: UserError | None, examples: Once, tab: str) -> list | None:
    """A tab's examples, or None after a one-line note in the tab (``{tab}-unavailable``) saying why its
    model cannot load (``error``, or the failure to render the examples from the model's config), also
    kept in ``state.unavailable[tab]``; the other tabs stay usable, and a request on this one fails with
    the loader's one line."""
    if error is None:
        try:
            return examples.get()
        except UserError as e:
            error = e
    state.unavailable[tab] = str(error)
    gr.Markdown(f"**Unavailable:** {error}", elem_id=f"{tab}-unavailable")
    return None


def _edit_tab(state: AppState) -> None:
    from generation.editing.pipeline_edit import METHODS, STRENGTH_RANGE

    with gr.Tab("Edit", id="edit"):
        gr.Markdown("A frame and the change you want (\"make it striped\", \"a blue one\"). The frame is "
                    "inverted into the generator's latent space (centre-cropped to a square and resized to the "
                    "generator's size first), edited there, and rendered. *mapper* edits in one pass; "
                    "*optimize* runs StyleCLIP-style latent optimisation (slower).")
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Frame", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                    elem_id="edit-input")
                prompt = gr.Textbox(label="Prompt", placeholder="make it striped", elem_id="edit-prompt")
                with gr.Row():
                    method = gr.Radio(list(METHODS), value="mapper", label="Method")
                    strength = gr.Slider(STRENGTH_RANGE[0], STRENGTH_RANGE[1], value=1.0, step=0.05, label="Strength")
                with gr.Row():
                    steps = gr.Slider(1, EDIT_STEPS_MAX, value=100, step=1, label="Steps (optimize)")
                    refine = gr.Slider(0, EDIT_STEPS_MAX, value=0, step=1, label="Inversion refinement steps",
                                       info=REFINE_INFO)
                faces = gr.Checkbox(value=False, label=FACES_LABEL, info=FACES_INFO, elem_id="edit-faces")
                button = gr.Button("Edit", variant="primary", elem_id="edit-button")
            with gr.Column():
                slider = gr.ImageSlider(label="Before | after", type="pil", format="png", elem_id="edit-slider",
                                        elem_classes="pixelated")
                with gr.Row():
                    recon = gr.Image(label="Reconstruction (inversion)", type="pil", format="png",
                                     elem_classes="pixelated")
                    download = gr.File(label="Edited PNG", elem_id="edit-download")
                settings = gr.JSON(label="Settings and inversion PSNR", elem_id="edit-settings")
                aligned = gr.Gallery(label="Aligned face | its edit (Align faces)", columns=2, format="png",
                                     elem_id="edit-faces-gallery")
        fn = make_edit(state)
        inputs = [image, prompt, method, strength, steps, refine, faces]
        outputs = [slider, recon, download, settings, aligned]
        gr.on([button.click, prompt.submit], fn, inputs=inputs, outputs=outputs, api_name="edit")
        examples = _examples_or_note(state, state.edit_error, state.edit_examples, "edit")
        if examples is not None:
            gr.Examples(examples=examples, inputs=[image, prompt], outputs=outputs, fn=fn,
                        cache_examples=True, cache_mode="lazy", label="Demo-domain examples")


def _video_tab(state: AppState) -> None:
    from generation.editing.pipeline_edit import METHODS, STRENGTH_RANGE

    with gr.Tab("Video", id="video"):
        gr.Markdown(f"A short clip (at most {VIDEO_MAX_FRAMES} frames; tick *{FIRST_FRAMES_LABEL}* for a longer "
                    "one). *edit*: one edit for the whole clip from its HD-VILA clip embedding, latents smoothed "
                    "over time; *upscale*: every frame super-resolved with the caption.")
        with gr.Row():
            with gr.Column():
                clip = gr.Video(label="Clip", sources=["upload"])
                task = gr.Radio(["edit", "upscale"], value="edit", label="Task")
                prompt = gr.Textbox(label="Prompt (edit) or caption (upscale, optional)",
                                    placeholder="make it striped")
                with gr.Row():
                    method = gr.Radio(list(METHODS), value="mapper", label="Method (edit)")
                    strength = gr.Slider(STRENGTH_RANGE[0], STRENGTH_RANGE[1], value=1.0, step=0.05,
                                         label="Strength (edit)")
                first = gr.Checkbox(value=False, label=FIRST_FRAMES_LABEL,
                                    info="of a longer clip (otherwise a longer clip is refused)")
                faces = gr.Checkbox(value=False, label=FACES_LABEL,
                                    info="real clips: one face tracked, processed and pasted back into every frame")
                button = gr.Button("Run", variant="primary")
            with gr.Column():
                result = gr.Video(label="Result", autoplay=True, loop=True)
                download = gr.File(label="Result mp4")
                summary = gr.Textbox(label="Summary", interactive=False)
                aligned = gr.Gallery(label="Middle frame: aligned face | its result | pasted back (Align faces)",
                                     columns=3, format="png")
        button.click(make_video(state), inputs=[clip, task, prompt, method, strength, first, faces],
                     outputs=[result, download, summary, aligned], api_name="video")


def _upscale_tab(state: AppState) -> None:
    with gr.Tab("Upscale", id="upscale"):
        gr.Markdown("A low-resolution frame (the bundled model takes 16x16 and returns 64x64; other sizes are "
                    "centre-cropped and resized, frames larger than the output are refused) and an optional "
                    "caption describing it.")
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Low-resolution frame", type="filepath", image_mode=None,
                                    sources=["upload", "clipboard"], elem_id="upscale-input")
                caption = gr.Textbox(label="Caption (optional)",
                                     placeholder="a red star with stripes on a blue background")
                faces = gr.Checkbox(value=False, label=FACES_LABEL, info=FACES_INFO + " (enlarged bicubically)")
                button = gr.Button("Upscale", variant="primary")
            with gr.Column():
                slider = gr.ImageSlider(label="Bicubic | super-resolved", type="pil", format="png",
                                        elem_classes="pixelated")
                download = gr.File(label="Super-resolved PNG")
                notes = gr.Textbox(label="Notes", interactive=False)
                aligned = gr.Gallery(label="Aligned face | super-resolved (Align faces)", columns=2, format="png",
                                     elem_classes="pixelated")
        fn = make_upscale(state)
        outputs = [slider, download, notes, aligned]
        button.click(fn, inputs=[image, caption, faces], outputs=outputs, api_name="upscale")
        examples = _examples_or_note(state, state.sr_error, state.examples, "upscale")
        if examples is not None:
            gr.Examples(examples=examples, inputs=[image, caption], outputs=outputs,
                        fn=fn, cache_examples=True, cache_mode="lazy", label="Demo-domain examples")


def _search_tab(state: AppState) -> None:
    where = state.videos_arg or "the demo videos"
    with gr.Tab("Search", id="search"):
        gr.Markdown(f"Describe a video; the best matches from {where} come back with their cosine scores.")
        with gr.Row():
            query = gr.Textbox(label="Query", placeholder="a red star moving left", scale=4)
            top = gr.Slider(1, SEARCH_TOP_MAX, value=5, step=1, label="Results")
        button = gr.Button("Search", variant="primary")
        gallery = gr.Gallery(label="Best matches", columns=3, object_fit="contain")
        table = gr.Dataframe(headers=["rank", "score", "file"], datatype=["number", "number", "str"],
                             label="Scores", interactive=False)
        summary = gr.Textbox(label="Searched", interactive=False)
        fn = make_search(state)
        gr.on([button.click, query.submit], fn, inputs=[query, top], outputs=[gallery, table, summary],
              api_name="search")


def build_app(sr_model: str | None = None, hdvila: str | None = None, videos: str | None = None, *,
              edit_model: str | None = None, generator: str | None = None,
              cache_dir: str | os.PathLike | None = None, embedding_cache: str | os.PathLike | None = None,
              device: str | None = None, concurrency_limit: int = CONCURRENCY_LIMIT) -> gr.Blocks:
    """The app as a ``gr.Blocks`` with its queue set up; models load on first use (or via
    ``demo.hdvila_state.preload()``). ``edit_model`` / ``generator`` / ``sr_model`` / ``hdvila`` /
    ``videos``: as the command-line options (None: the bundled models and the demo videos);
    ``cache_dir``: renders, results and cached examples (default :func:`default_cache_dir`);
    ``embedding_cache``: the video-embedding cache (default ``$HDVILA_CACHE`` or ``~/.cache/hdvila/embeddings``)."""
    state = AppState(sr_model, hdvila, videos, cache_dir=cache_dir, embedding_cache=embedding_cache, device=device,
                     edit_model=edit_model, generator=generator)
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(state.cache_dir / "gradio-examples"))
    with gr.Blocks(title="HD-VILA") as demo:
        gr.Markdown("# HD-VILA\nText-guided editing, text-conditioned super-resolution and text-to-video search.")
        with gr.Tabs():
            _edit_tab(state)
            _upscale_tab(state)
            _video_tab(state)
            _search_tab(state)
    demo.queue(default_concurrency_limit=concurrency_limit)
    demo.hdvila_state = state
    return demo


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve(demo: gr.Blocks, *, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, share: bool = False,
          prevent_thread_lock: bool = False, quiet: bool = False, preload: bool = True, build_ops: bool = True):
    """Start ``demo`` (from :func:`build_app`) on ``host:port`` and, with ``preload``, load its models in
    a background thread; with ``build_ops``, build the compiled StyleGAN2 ops in another (until they are
    ready, requests run the reference ops: the first edit answers in seconds on a fresh machine, not
    after the compiler; the log says when they are ready). Returns what ``gr.Blocks.launch`` returns
    (app, local url, share url). ``port=None``: a free port (tests, benchmarks); one taken by another
    process before the server binds it, or a start gradio gives up on (5 s, which a loaded machine can
    miss), is retried on a new port, five times in all."""
    state: AppState = demo.hdvila_state
    allowed = [str(state.cache_dir)] + ([str(Path(state.videos_arg).resolve())] if state.videos_arg else [])
    for attempt in range(1 if port is not None else 5):
        try:
            result = demo.launch(server_name=host, server_port=port or _free_port(host), share=share,
                                 prevent_thread_lock=True, quiet=quiet, max_file_size=MAX_FILE_SIZE,
                                 allowed_paths=allowed, show_error=True, css=CSS)
            break
        except OSError:
            if port is not None or attempt == 4:
                raise
    if preload:
        threading.Thread(target=state.preload, name="hdvila-preload", daemon=True).start()
    if build_ops:  # a first build takes 20-90 s: never inside a request (the reference ops serve meanwhile)
        from generation.stylegan2.ops._build import build_in_background
        from hdvila.device import get_device

        build_in_background(get_device(state.device), log=None if not quiet else (lambda message: None))
    if not prevent_thread_lock:
        demo.block_thread()
    return result


def launch(args) -> None:
    """``hdvila app``: build the app from the parsed options and serve it until interrupted."""
    demo = build_app(args.sr_model, args.hdvila, args.videos, edit_model=args.edit_model, generator=args.generator,
                     cache_dir=args.cache_dir, device=args.device, concurrency_limit=args.concurrency)
    for tab, error in demo.hdvila_state.unavailable.items():  # the other tabs serve; this one shows the same line
        print(f"warning: the {tab.capitalize()} tab is unavailable: {error}", file=sys.stderr, flush=True)
    serve(demo, host=args.host, port=args.port, share=args.share)
