"""Loading a pipeline folder for a command, with the user's replacement generator or HD-VILA model."""

from __future__ import annotations


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
