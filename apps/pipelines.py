"""The edit and super-resolution pipelines as the applications use them: loading a pipeline folder
with the user's replacement generator or HD-VILA model, and running a pipeline over a video.

``hdvila edit`` / ``hdvila upscale`` (:mod:`apps.commands`), ``hdvila eval-edit`` / ``eval-sr`` and
the web UI (:mod:`apps.web`) call these; the commands add argument parsing, batches and printing.

    pipe = load_edit_pipeline(None, device="cpu")                  # the bundled edit-demo64
    edit_video(pipe, "in.mp4", "out.mp4", "make it striped")       # one clip, the source's audio kept
    sr = load_sr_pipeline(None)                                    # the bundled sr-demo64-x4
    upscale_video(sr, "in.mp4", "out.mp4", "a red star")           # every frame, x4
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from generation.editing.pipeline_edit import EditPipeline
    from generation.superres.pipeline_sr import SRPipeline


def load_pipeline_folder(cls, model: str | None, bundled: str, accepts: str, generator: str | None = None,
                         hdvila: str | None = None, device: str | None = None):
    """``cls.from_pretrained`` of folder ``model`` (default: the bundled ``bundled``), with the generator
    (model folder or NVlabs .pkl) and HD-VILA model folder replaced when given, on ``device``. The
    pipeline's ``check_components`` refuses replacements that do not fit."""
    from hdvila.device import get_device
    from hdvila.paths import resolve_model_path

    folder = resolve_model_path(model, bundled, option="--model", accepts=accepts, marker="pipeline_index.json")
    overrides = {}
    if generator:
        from generation.stylegan2.convert import load_stylegan2

        overrides["generator"] = load_stylegan2(generator)
    if hdvila:
        from hdvila.modeling_hdvila import HDVILAModel
        from hdvila.processing_hdvila import HDVILAProcessor

        overrides["hdvila"] = HDVILAModel.from_pretrained(hdvila).eval()
        overrides["processor"] = HDVILAProcessor.from_config(overrides["hdvila"].config)
    return cls.from_pretrained(folder, **overrides).to(get_device(device))


def load_edit_pipeline(model: str | None, generator: str | None = None, hdvila: str | None = None,
                       device: str | None = None) -> EditPipeline:
    """The edit pipeline folder ``model`` (default: bundled), with the optional replacements, on ``device``."""
    from generation.editing.pipeline_edit import EditPipeline

    return load_pipeline_folder(EditPipeline, model, "edit-demo64",
                                "an EditPipeline folder (pipeline_index.json and one folder per component, "
                                "e.g. from generation/train_mapper.py --pipeline_dir)", generator, hdvila, device)


def load_sr_pipeline(model: str | None, generator: str | None = None, hdvila: str | None = None,
                     device: str | None = None) -> SRPipeline:
    """The SR pipeline folder ``model`` (default: bundled), with the optional replacements, on ``device``."""
    from generation.superres.pipeline_sr import SRPipeline

    return load_pipeline_folder(SRPipeline, model, "sr-demo64-x4",
                                "an SR pipeline folder (pipeline_index.json and one folder per component, "
                                "e.g. from generation/train_sr.py)", generator, hdvila, device)


# ---- videos --------------------------------------------------------------------------------------
def edit_video(pipe: EditPipeline, src, dst, prompt: str, *, method: str = "mapper", strength: float = 1.0,
               steps: int = 300, refine_steps: int = 0, refine_texture: float | None = None,
               temporal_sigma: float = 1.0, max_frames: int | None = 2000, write=None,
               faces: str | None = None) -> dict:
    """The video ``src`` (at most ``max_frames`` frames; a longer one is refused) edited as one clip
    and written to ``dst`` with ``src``'s audio: :func:`edit_frames_to_video` on its frames."""
    from hdvila.videoio import read_video_checked

    notes: list[str] = []  # a truncated file's note, in the result's "note"
    frames, fps = read_video_checked(src, max_frames, notes=notes)
    return edit_frames_to_video(pipe, frames, fps, dst, prompt, method=method, strength=strength, steps=steps,
                                refine_steps=refine_steps, refine_texture=refine_texture,
                                temporal_sigma=temporal_sigma, write=write, faces=faces, name=str(src),
                                audio_from=src, read_notes=notes)


def edit_frames_to_video(pipe: EditPipeline, frames, fps: float, dst, prompt: str, *, method: str = "mapper",
                         strength: float = 1.0, steps: int = 300, refine_steps: int = 0,
                         refine_texture: float | None = None, temporal_sigma: float = 1.0, write=None,
                         faces: str | None = None, name: str = "the clip", audio_from=None,
                         read_notes: Sequence[str] = ()) -> dict:
    """The frames of a video (uint8 [T, H, W, 3], e.g. from :func:`hdvila.videoio.read_video_checked`)
    edited as one clip (:meth:`EditPipeline.edit_clip
    <generation.editing.pipeline_edit.EditPipeline.edit_clip>`: one offset for every frame, latents
    smoothed over time; ``refine_steps`` projector steps per frame with ``refine_texture`` their
    texture-loss weight, None for the pipeline's default), written to ``dst`` as an mp4 at ``fps``
    (atomically) with the audio of the file ``audio_from`` (the source video; trimmed to the frames, see
    :func:`hdvila.videoio.write_video`), if given and it has any. Returns
    {"frames": T, "inversion_psnr": mean dB, "note": ``read_notes`` (what reading the file found, e.g. a
    truncated file) and the input-policy note, "; "-joined ("" if none),
    "prompt_notes": notes on the prompt}; ``write(result, save)``, if given, is called in place of
    ``save()``, the mp4 write (``hdvila edit`` wraps it with its metadata sidecar).

    ``faces`` ("largest"; "all" is refused for a clip): one face tracked through the clip (named
    ``name`` in messages) with smoothed landmarks, its aligned crops edited as the clip, each pasted
    back into its full-size frame; the result adds "faces" (a
    :class:`~generation.faces.pipeline.ClipFaces`) and "preview" (the middle frame's crop, edit and
    pasted-back frame)."""
    import torch

    from hdvila.tensors import uint8_to_unit

    if faces:
        from generation.faces.pipeline import ClipFaces, align_clip_faces, paste_clip

        pipe.check_inputs(len(frames), prompt, method, strength, steps, refine_steps, latents_given=False,
                          refine_texture=refine_texture)
        pipe.encode_prompt(prompt, 1)  # a bad prompt fails before the detector runs over every frame
        aligned = align_clip_faces(frames, pipe.resolution, faces, name=name)
        x = torch.stack([a.crop for a in aligned])
    else:
        x = uint8_to_unit(torch.from_numpy(frames).permute(0, 3, 1, 2))
    out = pipe.edit_clip(x, prompt, method=method, strength=strength, steps=steps, refine_steps=refine_steps,
                         refine_texture=refine_texture, temporal_sigma=temporal_sigma)
    result = {"frames": len(frames), "inversion_psnr": out.inversion_psnr,
              "note": "; ".join([*read_notes, *out.notes]), "prompt_notes": out.prompt_notes}
    video = out.frames
    if faces:
        clip_faces = ClipFaces(aligned=aligned, outputs=out.frames)
        video = paste_clip(frames, aligned, out.frames)
        result["faces"], result["preview"] = clip_faces, clip_faces.preview(video)

    return _write_clip(dst, video, fps, audio_from, result, write)


def upscale_video(pipe: SRPipeline, src, dst, prompt: str | None, *, scale: int | None = None, batch_size: int = 16,
                  max_frames: int | None = 2000, faces: str | None = None, write=None):
    """Every frame of the video ``src`` (at most ``max_frames``; a longer one is refused), upscaled and
    written to ``dst`` with ``src``'s audio: :func:`upscale_frames_to_video` on its frames (returns its
    note, after a truncated file's note), or with ``faces`` :func:`upscale_faces_to_video` (returns its
    result, with "note": a truncated file's note or "")."""
    from hdvila.videoio import read_video_checked

    notes: list[str] = []  # a truncated file's note
    frames, fps = read_video_checked(src, max_frames, notes=notes)
    if faces:
        result = upscale_faces_to_video(pipe, frames, fps, dst, prompt, scale=scale, batch_size=batch_size,
                                        faces=faces, name=str(src), write=write, audio_from=src)
        return {**result, "note": "; ".join(notes)}
    note = upscale_frames_to_video(pipe, frames, fps, dst, prompt, scale=scale, batch_size=batch_size,
                                   audio_from=src, write=write)
    return "; ".join([*notes, *([note] if note else [])]) or None


def upscale_faces_to_video(pipe: SRPipeline, frames, fps: float, dst, prompt: str | None, *, scale: int | None = None,
                           batch_size: int = 16, faces: str = "largest", name: str = "the clip", write=None,
                           audio_from=None) -> dict:
    """The face of a video (uint8 frames [T, H, W, 3]) tracked through it with smoothed landmarks
    (``faces``: "largest"; "all" is refused for a clip), aligned at the model's LR size,
    super-resolved, and pasted into each frame enlarged bicubically by ``scale``; written to ``dst`` as
    an mp4 at ``fps`` (atomically) with the audio of ``audio_from``, if given (as in
    :func:`upscale_frames_to_video`). Returns {"frames": T, "faces": a
    :class:`~generation.faces.pipeline.ClipFaces`, "preview": the middle frame's crop, its
    super-resolution and the pasted-back frame}; ``write(result, save)`` as in
    :func:`edit_frames_to_video`."""
    import torch

    from generation.faces.pipeline import ClipFaces, align_clip_faces, check_upscaled_size, paste_clip

    scale = scale or pipe.sr_model.config.scale
    pipe.check_inputs([None], prompt, scale)
    check_upscaled_size(frames.shape[1], frames.shape[2], scale, name)
    aligned = align_clip_faces(frames, pipe.lr_resolution, faces, name=name)
    crops = torch.stack([a.crop for a in aligned])
    outs = pipe(crops, prompt=prompt, scale=scale, output_type="pt", batch_size=batch_size).images
    clip_faces = ClipFaces(aligned=aligned, outputs=outs, scale=scale)
    video = paste_clip(frames, aligned, clip_faces.outputs, scale=scale)
    result = {"frames": len(frames), "faces": clip_faces, "preview": clip_faces.preview(video)}

    return _write_clip(dst, video, fps, audio_from, result, write)


def upscale_frames_to_video(pipe: SRPipeline, frames, fps: float, dst, prompt: str | None, *, scale: int | None = None,
                            batch_size: int = 16, audio_from=None, write=None) -> str | None:
    """The frames of a video (uint8 [T, H, W, 3]), each upscaled by ``pipe`` (an SRPipeline), written
    to ``dst`` as an mp4 at ``fps`` (atomically) with the audio of the file ``audio_from`` (the source
    video; trimmed to the frames, see :func:`hdvila.videoio.write_video`), if given and it has any.
    Returns the input-policy note of the frames (one for the video, not one per frame), or None;
    ``write(note, save)``, if given, is called in place of ``save()``, the mp4 write (``hdvila upscale``
    wraps it with its metadata sidecar)."""
    import torch

    from hdvila.tensors import uint8_to_unit

    x = uint8_to_unit(torch.from_numpy(frames).permute(0, 3, 1, 2))
    note = None
    outs = []
    for i in range(0, len(x), batch_size):
        out = pipe(x[i:i + batch_size], prompt=prompt, scale=scale or pipe.sr_model.config.scale, output_type="pt")
        note = note or next((n for n in out.notes if n), None)
        outs.append(out.images)
    return _write_clip(dst, torch.cat(outs), fps, audio_from, note, write)


def _write_clip(dst, video, fps: float, audio_from, result, write):
    """Write ``video`` to ``dst`` as an mp4 (with ``audio_from``'s audio), or hand the write to
    ``write(result, save)`` when given; returns ``result``."""
    from hdvila.videoio import write_video

    def save():
        write_video(dst, video, fps=fps, audio_from=audio_from)

    if write is None:
        save()
    else:
        write(result, save)
    return result
