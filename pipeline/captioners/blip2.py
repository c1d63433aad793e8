"""BLIP-2 captioning gateway: the one place the pipeline loads and runs a BLIP-2 model.

The `caption` stage gets a `Captioner` from `load_captioner` and never touches transformers
itself, so tests swap in the tiny random model that `build_tiny_blip2` writes to disk and load
it back through the same `load_captioner` path that users take with real weights.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pipeline.core.images import to_rgb

_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}

# Plenty of words so a random tiny model decodes to readable, non-empty captions.
_TINY_WORDS = (
    "a an the of with and on in but is are this that photo picture image shirt dress top tee "
    "shoe shoes boot sneaker heel skirt jacket coat red blue green black white grey yellow "
    "pink purple orange brown striped floral plain long short sleeve sleeves collar neck "
    "v round pocket buttons print logo graphic leather cotton lace denim silk casual formal "
    "woman man model wearing person standing background small large bright dark light pattern "
    "circle square triangle star left right top bottom center"
).split()


def resolve_device(device: str = "auto") -> torch.device:
    """Map "auto" to cuda, then mps, then cpu; pass any explicit torch device string through."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map "auto" to float16 on cuda and float32 elsewhere; accept float16/bfloat16/float32."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(
            f"unknown caption dtype {dtype!r}; use one of: auto, {', '.join(sorted(_DTYPES))}"
        )
    return _DTYPES[dtype]


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
                "point caption.model at the folder written by save_pretrained, or a hub id."
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
            f"BLIP-2 model directory {model!r} does not exist; fix caption.model in params.yaml "
            "to an existing directory or a hub id such as Salesforce/blip2-opt-2.7b."
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


@dataclass(frozen=True)
class Blip2Sizes:
    """The dimensions that set BLIP-2's cost: EVA ViT, Q-Former, and OPT decoder."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    image_size: int
    patch_size: int
    qformer_hidden: int
    qformer_layers: int
    qformer_heads: int
    qformer_intermediate: int
    num_query_tokens: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_ffn: int
    text_vocab: int
    text_max_positions: int = 2048  # OPT's
    qformer_vocab: int | None = None  # None: transformers' default (BERT's 30,522)
    qformer_max_positions: int | None = None  # None: transformers' default (512)


def blip2_config(sizes: Blip2Sizes, tokenizer: object) -> object:
    """A Blip2Config with an OPT decoder of the given sizes and the tokenizer's special ids."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    vision = Blip2VisionConfig(
        hidden_size=sizes.vision_hidden,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.vision_heads,
        intermediate_size=sizes.vision_intermediate,
        image_size=sizes.image_size,
        patch_size=sizes.patch_size,
    )
    qformer_extra = {
        key: value
        for key, value in (
            ("vocab_size", sizes.qformer_vocab),
            ("max_position_embeddings", sizes.qformer_max_positions),
        )
        if value is not None
    }
    qformer = Blip2QFormerConfig(
        hidden_size=sizes.qformer_hidden,
        num_hidden_layers=sizes.qformer_layers,
        num_attention_heads=sizes.qformer_heads,
        intermediate_size=sizes.qformer_intermediate,
        **qformer_extra,
    )
    text = OPTConfig(
        vocab_size=sizes.text_vocab,
        hidden_size=sizes.text_hidden,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        ffn_dim=sizes.text_ffn,
        word_embed_proj_dim=sizes.text_hidden,
        max_position_embeddings=sizes.text_max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=sizes.num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )


def build_tiny_blip2(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random BLIP-2 (OPT decoder) and an offline processor to out_dir."""
    from transformers import Blip2ForConditionalGeneration

    out_dir = Path(out_dir)
    processor = offline_processor(image_size=32, num_query_tokens=4)
    tokenizer = processor.tokenizer
    sizes = Blip2Sizes(
        vision_hidden=32,
        vision_layers=2,
        vision_heads=4,
        vision_intermediate=64,
        image_size=32,
        patch_size=8,
        qformer_hidden=32,
        qformer_layers=2,
        qformer_heads=4,
        qformer_intermediate=64,
        num_query_tokens=4,
        text_hidden=32,
        text_layers=2,
        text_heads=4,
        text_ffn=64,
        text_vocab=len(tokenizer),
        text_max_positions=128,
        qformer_vocab=len(tokenizer),
        qformer_max_positions=64,
    )
    config = blip2_config(sizes, tokenizer)
    image_token_id = config.image_token_index
    torch.manual_seed(seed)
    network = Blip2ForConditionalGeneration(config).eval()
    # Random weights could end a caption at once; ask for a few words and never emit the
    # placeholder/pad/unknown ids (BOS is EOS, so it stays), so every caption has words.
    generation = network.generation_config
    generation.min_new_tokens = 3
    generation.suppress_tokens = [image_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id]
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def offline_processor(image_size: int, num_query_tokens: int) -> object:
    """A Blip2Processor with a word-level tokenizer made in memory, for random-weight models."""
    from transformers import Blip2Processor, BlipImageProcessor

    # The processor adds the <image> placeholder token to the tokenizer itself.
    return Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=_word_tokenizer(),
        num_query_tokens=num_query_tokens,
    )


def _word_tokenizer() -> object:
    """A word-level tokenizer built in memory, OPT-style (BOS prepended), needing no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {
        token: index for index, token in enumerate(specials + list(dict.fromkeys(_TINY_WORDS)))
    }
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # OPT uses </s> as both BOS and EOS and prepends it to every text.
    backend.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )
