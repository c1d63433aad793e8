"""Caption backend `blip2`, and the one place the pipeline loads and runs a BLIP-2 model.

The backend (`check`, `captions`) fans the reference images out over dask in chunks; each
worker loads one `Captioner` through `load_captioner` and reuses it for every chunk it runs.
Nothing else touches transformers, so tests swap in a tiny random model written to disk
(devkit.tiny) and load it back through the same `load_captioner` path users take with real
weights. Settings: the `caption.blip2` section of params.yaml.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pipeline.captioners.base import ReferenceImages
from pipeline.core.images import ImageLoadError, load_rgb, to_rgb
from pipeline.core.models import resolve_model
from pipeline.core.parallel import map_tasks
from pipeline.core.params import Blip2Params, CaptionParams, Params
from pipeline.core.report import StageReport
from pipeline.core.shards import shard_ranges
from trainer.runtime import resolve_device

_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map "auto" to float16 on cuda and float32 elsewhere; accept float16/bfloat16/float32."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(
            f"unknown caption dtype {dtype!r}; use one of: auto, {', '.join(sorted(_DTYPES))}"
        )
    return _DTYPES[dtype]



def check(params: CaptionParams) -> None:
    """A missing local model folder fails now, before the workers start."""
    resolve_model(params.blip2.model)


@dataclass(frozen=True)
class CaptionTask:
    """One chunk of images to caption on one worker."""

    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    settings: Blip2Params
    on_bad_record: str


def captions(references: ReferenceImages, params: Params, report: StageReport) -> dict[str, str]:
    """Caption every reference image, in chunks spread over the dask workers."""
    cfg = params.caption
    refs = references.ids
    n_chunks = max(1, min(len(refs), params.parallel.workers * 4))
    tasks = [
        CaptionTask(tuple(refs[a:b]), tuple(references.paths[r] for r in refs[a:b]), cfg.blip2,
                    cfg.on_bad_record)
        for a, b in shard_ranges(len(refs), n_chunks)
        if b > a
    ]
    out: dict[str, str] = {}
    resources = {cfg.worker_resource: 1} if cfg.worker_resource else None
    for chunk_captions, chunk_report in map_tasks(caption_chunk, tasks, params.parallel,
                                                  resources, desc="caption",
                                                  sizes=[len(t.image_ids) for t in tasks],
                                                  unit="images"):
        out.update(chunk_captions)
        report.merge(chunk_report)
    return out


@functools.lru_cache(maxsize=1)
def _worker_captioner(model: str, device: str, compile: bool) -> Captioner:
    # One model per worker process, reused by every task the worker runs.
    return load_captioner(resolve_model(model), device=device, compile=compile)


def caption_chunk(task: CaptionTask) -> tuple[dict[str, str], StageReport]:
    """Caption one chunk, skipping (or failing on) unreadable images."""
    settings = task.settings
    report = StageReport("caption", task.on_bad_record)
    captioner = _worker_captioner(settings.model, settings.device, settings.compile)
    out: dict[str, str] = {}
    batch_ids: list[str] = []
    batch_images: list[Image.Image] = []

    def flush() -> None:
        if batch_images:
            texts = captioner.caption(batch_images, prompt=settings.prompt,
                                      max_new_tokens=settings.max_new_tokens,
                                      num_beams=settings.num_beams)
            out.update(zip(batch_ids, texts, strict=True))
            batch_ids.clear()
            batch_images.clear()

    for image_id, path in zip(task.image_ids, task.paths, strict=True):
        report.n_in += 1
        try:
            batch_images.append(load_rgb(path))
            batch_ids.append(image_id)
        except ImageLoadError as err:
            report.bad(f"image {image_id}", str(err), "replace the file or drop its triplets")
        if len(batch_images) == settings.batch_size:
            flush()
    flush()
    report.n_out = len(out)
    return out, report


@dataclass
class Captioner:
    """A loaded BLIP-2 model with its processor, ready to caption batches of PIL images."""

    model: torch.nn.Module
    processor: object
    device: torch.device
    dtype: torch.dtype
    # Static KV cache + torch.compile of the decode step (CUDA graphs on GPU): one compile per
    # batch size (~20 s on an H200), then fewer kernel launches per generated token.
    compile: bool = False
    # transformers compiles only on accelerators; tests set this to exercise the path on CPU.
    compile_all_devices: bool = False

    @torch.inference_mode()
    def caption(
        self,
        images: list[Image.Image],
        prompt: str | None = None,
        max_new_tokens: int = 30,
        num_beams: int = 1,
    ) -> list[str]:
        """Caption each image greedily (or by beam search); one stripped string per image."""
        if not images:
            return []
        if max_new_tokens < 1 or num_beams < 1:
            raise ValueError(
                f"max_new_tokens ({max_new_tokens}) and num_beams ({num_beams}) must be >= 1"
            )
        for index, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(
                    f"caption() takes PIL images; item {index} is {type(image).__name__}. "
                    "Open files with PIL.Image.open before captioning."
                )
        with torch.profiler.record_function("caption.preprocess"):
            rgb = [to_rgb(image) for image in images]
            inputs = self._inputs(rgb, prompt)
        input_ids = inputs["input_ids"].to(self.device)
        with torch.profiler.record_function("caption.generate"):
            generated = self.model.generate(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                input_ids=input_ids,
                attention_mask=inputs["attention_mask"].to(self.device),
                generation_config=self._generation_config(max_new_tokens, num_beams),
            )
        # Decoder-only language models echo the prompt (image tokens, BOS, prompt text) in
        # recent transformers; encoder-decoder ones and older releases return only new tokens.
        prompt_length = input_ids.shape[1]
        if generated.shape[1] >= prompt_length and torch.equal(
            generated[:, :prompt_length], input_ids
        ):
            generated = generated[:, prompt_length:]
        with torch.profiler.record_function("caption.decode"):
            texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def _inputs(self, rgb: list[Image.Image], prompt: str | None) -> dict:
        """Processor outputs: pixel values on the model's device, prompt ids and mask."""
        # One prompt for the whole batch means equal lengths, so no padding inside the prompt.
        # An empty prompt still goes through the processor: it yields the image placeholder
        # tokens plus BOS, the same input the model builds itself, and tells us its length.
        # device=: resize and normalise on the model's device (torchvision image processor),
        # which on a GPU keeps preprocessing from capping captioning throughput.
        return self.processor(
            images=rgb,
            text=[prompt or ""] * len(rgb),
            return_tensors="pt",
            padding=True,
            device=self.device,
        )

    def _generation_config(self, max_new_tokens: int, num_beams: int) -> object:
        """The checkpoint's generation settings (its eos, suppressed ids) made deterministic."""
        # BLIP-2 hands generation to its inner language model, whose own config would miss
        # what the checkpoint saved (eos, pad, suppressed ids), so pass it explicitly.
        config = copy.deepcopy(self.model.generation_config)
        tokenizer = self.processor.tokenizer
        pad_token_id = config.pad_token_id
        if pad_token_id is None:
            pad_token_id = (
                tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id
            )
        config.update(
            max_new_tokens=max_new_tokens,
            max_length=None,
            num_beams=num_beams,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            num_return_sequences=1,
            pad_token_id=pad_token_id,
        )
        if self.compile:
            from transformers import CompileConfig

            # transformers compiles the decode step itself once the cache is static
            # (mode reduce-overhead: CUDA graphs); dynamic=False: one graph per batch size.
            config.cache_implementation = "static"
            config.compile_config = CompileConfig(fullgraph=True, dynamic=False)
            config.compile_config._compile_all_devices = self.compile_all_devices
        return config


def load_captioner(
    model: str, device: str = "auto", dtype: str = "auto", compile: bool = False
) -> Captioner:
    """Load a BLIP-2 model and processor from a hub id or a local directory for captioning."""
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    local = _local_model_dir(model)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source = str(local) if local is not None else model
    # A local directory must never reach the network; a hub id may use the local cache.
    hub_kwargs = {"local_files_only": True} if local is not None else {}
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=False, **hub_kwargs)
        network = Blip2ForConditionalGeneration.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=False, **hub_kwargs
        )
    except OSError as error:
        raise OSError(
            f"could not load BLIP-2 model {model!r}: {error}\n"
            "Give a local directory holding a saved Blip2ForConditionalGeneration and its "
            "processor, or a hub id (e.g. Salesforce/blip2-opt-2.7b) already in the Hugging "
            "Face cache; download it first on a machine with internet if needed."
        ) from error
    _check_image_tokens(network, processor, model)
    network.to(torch_device).eval()
    return Captioner(
        model=network, processor=processor, device=torch_device, dtype=torch_dtype, compile=compile
    )


def _local_model_dir(model: str) -> Path | None:
    """Return the directory when `model` names a local path, None for a hub id."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"BLIP-2 model path {path} is not a saved model directory (no config.json); "
                "point caption.blip2.model at the folder written by save_pretrained, or a hub id."
            )
        return path
    looks_local = (
        model.startswith((".", "/", "~"))
        or "\\" in model
        or model.count("/") > 1
        or os.path.isabs(model)
    )
    if looks_local:
        raise FileNotFoundError(
            f"BLIP-2 model directory {model!r} does not exist; fix caption.blip2.model in "
            "params.yaml to an existing directory or a hub id such as Salesforce/blip2-opt-2.7b."
        )
    return None


def _check_image_tokens(network: torch.nn.Module, processor: object, model: str) -> None:
    """Fail early on checkpoints saved before BLIP-2 gained image placeholder tokens."""
    if network.config.image_token_index is None:
        raise ValueError(
            f"BLIP-2 model {model!r} has no image_token_index in its config.json (an old "
            "checkpoint); re-download it or save it again with a recent transformers."
        )
    if getattr(processor, "num_query_tokens", None) is None:
        # Older processor configs omit it; without it the prompt carries no image slots and
        # the model would silently caption from text alone.
        processor.num_query_tokens = network.config.num_query_tokens

