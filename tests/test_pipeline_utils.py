"""The pipeline base: a tiny pipeline (tiny StyleGAN2 generator, tiny HD-VILA model, the processor)
saved to a folder and loaded back through the base; its index, refusals, overrides and outputs."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from generation.pipeline_utils import INDEX_NAME, Pipeline, PipelineOutput
from generation.stylegan2.config import StyleGAN2Config
from generation.stylegan2.networks import Generator
from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError, UserError
from hdvila.modeling_hdvila import HDVILAModel
from hdvila.processing_hdvila import HDVILAProcessor

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_HDVILA = dict(text_init="random", freeze_text_encoder=False, resnet_layers=(1, 1, 1, 1), resnet_width=8,
                   vision_width=32, timesformer_depth=1, timesformer_heads=4, text_hidden_size=32, text_heads=4,
                   text_intermediate_size=64, text_layers=2, multimodal_layers=1, projection_dim=16,
                   max_position_embeddings=64, hr_size=(64, 64), lr_size=(16, 16), resnet_stem_pool=True)


def tiny_generator(seed=0):
    torch.manual_seed(seed)
    return Generator(StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=1, channel_base=128,
                                     channel_max=16)).eval()


@dataclass
class TinyOutput(PipelineOutput):
    text_embeds: torch.Tensor | None = None


class TinyPipeline(Pipeline):
    """Samples the generator (the random ``rng``: ``generator`` names the StyleGAN2 component, as in
    the package's pipelines); embeds the prompt with HD-VILA when there is one."""

    def __init__(self, generator, hdvila=None, processor=None, extra=None):
        super().__init__()
        self.register_modules(generator=generator, hdvila=hdvila, processor=processor, extra=extra)

    def check_components(self):
        if (self.hdvila is None) != (self.processor is None):
            raise CheckpointError("hdvila and processor come together")

    def check_inputs(self, num_images):
        if num_images < 1:
            raise UserError("num_images must be >= 1")

    @torch.no_grad()
    def __call__(self, num_images=2, prompt=None, rng=None, output_type="pil", return_dict=True):
        self.check_inputs(num_images)
        z = torch.randn(num_images, self.generator.z_dim, generator=rng)
        images = torch.cat([self.generator(z[i:i + 1].to(self.device)) for i in self.progress_bar(range(num_images))])
        text = None
        if prompt is not None:
            tok = self.processor.tokenize(prompt)
            text = self.hdvila.get_text_features(tok["input_ids"], tok["attention_mask"])
        out = TinyOutput(images=self.postprocess(images, output_type), text_embeds=text)
        return out if return_dict else out.to_tuple()


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(3)
    hdvila = HDVILAModel(HDVILAConfig.preset("mini", **TINY_HDVILA)).eval()
    return TinyPipeline(tiny_generator(), hdvila=hdvila, processor=HDVILAProcessor.from_config(hdvila.config))


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe") / "tiny"
    pipe.save_pretrained(folder)
    return folder


def test_save_writes_one_folder_per_component_and_the_index(saved):
    index = json.loads((saved / INDEX_NAME).read_text())
    assert index == {"_class_name": f"{TinyPipeline.__module__}.TinyPipeline",
                     "generator": "generation.stylegan2.networks.Generator",
                     "hdvila": "hdvila.modeling_hdvila.HDVILAModel",
                     "processor": "hdvila.processing_hdvila.HDVILAProcessor",
                     "extra": None}
    assert sorted(p.name for p in saved.iterdir()) == ["generator", "hdvila", INDEX_NAME, "processor"]
    assert (saved / "generator" / "model.safetensors").is_file()
    assert (saved / "processor" / "preprocessor_config.json").is_file()
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".tmp")]  # nothing left of the atomic write


def test_reloaded_pipeline_gives_the_same_outputs(pipe, saved):
    again = TinyPipeline.from_pretrained(saved)
    assert type(again.generator) is Generator and again.extra is None
    assert again.processor.to_dict() == pipe.processor.to_dict()
    pipe.set_progress_bar_config(disable=True)
    again.set_progress_bar_config(disable=True)
    a = pipe(3, prompt="a red star", rng=torch.Generator().manual_seed(7), output_type="pt")
    b = again(3, prompt="a red star", rng=torch.Generator().manual_seed(7), output_type="pt")
    assert torch.equal(a.images, b.images) and torch.equal(a.text_embeds, b.text_embeds)
    c = again(3, rng=torch.Generator().manual_seed(8), output_type="pt")
    assert not torch.equal(a.images, c.images)  # the seed matters: the equality above is not vacuous


def test_override_replaces_a_component_without_reading_its_folder(saved):
    other = tiny_generator(seed=5)
    again = TinyPipeline.from_pretrained(saved, generator=other)
    assert again.generator is other
    with pytest.raises(UserError, match=r"no component\(s\) \['unet'\]"):
        TinyPipeline.from_pretrained(saved, unet=other)


def test_output_types_and_return_dict(pipe):
    pipe.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    pt = pipe(2, rng=g(), output_type="pt").images
    assert pt.shape == (2, 3, 16, 16) and pt.dtype == torch.float32 and pt.min() >= -1 and pt.max() <= 1
    arr = pipe(2, rng=g(), output_type="np").images
    assert arr.shape == (2, 16, 16, 3) and arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1
    np.testing.assert_allclose(arr, ((pt + 1) / 2).permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pil = pipe(2, rng=g()).images
    assert len(pil) == 2 and all(isinstance(i, Image.Image) and i.mode == "RGB" and i.size == (16, 16) for i in pil)
    assert np.abs(np.asarray(pil[0], np.float32) / 255 - arr[0]).max() <= 0.5 / 255 + 1e-6
    images, text = pipe(2, rng=g(), output_type="pt", return_dict=False)
    assert torch.equal(images, pt) and text is None
    with pytest.raises(UserError, match="output_type must be one of 'pil', 'np', 'pt'"):
        pipe(1, output_type="latent")
    with pytest.raises(UserError, match="num_images"):
        pipe(0)


def test_to_device_and_progress_bar(pipe, capsys):
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")
    pipe.set_progress_bar_config(disable=False, desc="tiny")
    assert list(pipe.progress_bar(range(3))) == [0, 1, 2]
    assert "tiny" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    list(pipe.progress_bar(range(3)))
    assert capsys.readouterr().err == ""


def test_base_class_loads_the_pipeline_the_index_names(saved, monkeypatch):
    import generation.pipeline_utils as pu

    with pytest.raises(UserError, match="pipelines load only classes of this package"):
        Pipeline.from_pretrained(saved)  # this test module is not part of the package: refused
    monkeypatch.setattr(pu, "ALLOWED_MODULE_PREFIXES", (*pu.ALLOWED_MODULE_PREFIXES, f"{TinyPipeline.__module__}."))
    assert type(Pipeline.from_pretrained(saved)) is TinyPipeline


def test_foreign_classes_are_refused_before_any_import(saved, tmp_path, monkeypatch):
    import shutil
    import sys

    folder = tmp_path / "evil"
    shutil.copytree(saved, folder)
    index = json.loads((folder / INDEX_NAME).read_text())
    index["generator"] = "os.system"
    (folder / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(UserError, match=r"names the class 'os.system'; pipelines load only classes of this package"):
        TinyPipeline.from_pretrained(folder)
    index["generator"] = "evil_module_h3.Thing"
    (folder / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(UserError, match="load only classes of this package"):
        TinyPipeline.from_pretrained(folder)
    assert "evil_module_h3" not in sys.modules
    # a foreign component cannot be saved either: the folder could not be loaded back
    with pytest.raises(UserError, match="can hold only classes of this package"):
        TinyPipeline(torch.nn.Linear(2, 2)).save_pretrained(tmp_path / "foreign")
    assert not (tmp_path / "foreign").exists()


def test_missing_and_damaged_folders_say_what_is_wrong(saved, tmp_path):
    import shutil

    with pytest.raises(CheckpointError, match="pipeline folder not found"):
        TinyPipeline.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"pipeline_index.json is missing.*It holds a single model"):
        TinyPipeline.from_pretrained(saved / "generator")
    folder = tmp_path / "damaged"
    shutil.copytree(saved, folder)
    shutil.rmtree(folder / "hdvila")
    with pytest.raises(CheckpointError, match=r"hdvila is missing: .* lists the component 'hdvila'"):
        TinyPipeline.from_pretrained(folder)
    (folder / "processor" / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="component 'processor' .*preprocessor_config.json is missing"):
        TinyPipeline.from_pretrained(folder, hdvila=None)
    (folder / INDEX_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        TinyPipeline.from_pretrained(folder)
    (folder / INDEX_NAME).write_text(json.dumps({"_class_name": "x.EditPipeline", "generator": None}))
    with pytest.raises(CheckpointError, match="holds a EditPipeline, not a TinyPipeline"):
        TinyPipeline.from_pretrained(folder)


def test_check_components_runs_after_loading(saved):
    with pytest.raises(CheckpointError, match="come together"):
        TinyPipeline.from_pretrained(saved, processor=None)


def test_postprocess_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        Pipeline.postprocess(torch.zeros(3, 8, 8), "pt")


def test_fit_to_square_is_one_policy_for_every_image_command():
    """Too small or a long strip is refused (naming the task), anything else is centre-cropped and
    resized with a note; the exact size passes untouched."""
    from generation.pipeline_utils import MAX_ASPECT, fit_to_square
    from hdvila.errors import InputFileError

    x = torch.zeros(3, 64, 64)
    assert fit_to_square(x, 64, "a.png", "the generator's 64x64", min_side=8, task="edit")[1] == ""
    t, note = fit_to_square(torch.zeros(3, 60, 100), 64, "a.png", "the generator's 64x64", min_side=8, task="edit")
    assert t.shape == (3, 64, 64) and note == ("a.png: 100x60 px is not the generator's 64x64; centre-cropped to "
                                                "60x60 and resized to 64x64.")
    with pytest.raises(InputFileError, match="a.png is 1x1 px: too small to edit"):
        fit_to_square(torch.zeros(3, 1, 1), 64, "a.png", "x", min_side=8, task="edit")
    with pytest.raises(InputFileError, match=r"a.png is 4000x8 px, a strip of 500:1: .* 0.2% .* to upscale"):
        fit_to_square(torch.zeros(3, 8, 4000), 64, "a.png", "x", min_side=4, task="upscale")
    side = 10
    fit_to_square(torch.zeros(3, side, int(side * MAX_ASPECT)), 64, "a.png", "x")  # 4:1 still passes
