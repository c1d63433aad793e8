"""Tiny random models for tests and benchmarks, saved to disk and loaded by the product's paths.

BLIP-2 (`build_tiny_blip2`, and `Blip2Sizes` / `blip2_config` / `offline_processor` for
benchmarks at real sizes) goes back through `pipeline.captioners.blip2.load_captioner`; the
sentence-transformers model (`build_tiny_sentence_model`) through
`pipeline.keyphrases.load_keyword_model`. Everything is built in memory: no download. The tiny
CLIP needs no builder: it is the `dqu-test` open_clip config shipped in trainer/models/configs/.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

# Plenty of words so a random tiny model decodes to readable, non-empty captions (and
# a tiny sentence model sees few unknown tokens in garment-like texts).
_TINY_WORDS = (
    "a an the of with and on in but is are this that photo picture image shirt dress top tee "
    "shoe shoes boot sneaker heel skirt jacket coat red blue green black white grey yellow "
    "pink purple orange brown striped floral plain long short sleeve sleeves collar neck "
    "v round pocket buttons print logo graphic leather cotton lace denim silk casual formal "
    "woman man model wearing person standing background small large bright dark light pattern "
    "circle square triangle star left right top bottom center"
).split()


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


def build_tiny_sentence_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random BERT sentence-transformers model (mean pooling) to out_dir."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    tokenizer = _bert_word_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    network = BertModel(config).eval()
    with tempfile.TemporaryDirectory(prefix="tiny-bert-") as plain:
        # A plain transformers folder: sentence-transformers wraps it with mean pooling, and
        # saving that writes the modules.json layout load_keyword_model reads back.
        network.save_pretrained(plain)
        tokenizer.save_pretrained(plain)
        model = SentenceTransformer(plain, device="cpu", local_files_only=True)
        model.max_seq_length = config.max_position_embeddings
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save(str(out_dir))
    return out_dir


def _bert_word_tokenizer() -> object:
    """A lower-casing word-level tokenizer built in memory, BERT-style ([CLS] text [SEP])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {
        token: index for index, token in enumerate(specials + list(dict.fromkeys(_TINY_WORDS)))
    }
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_tiny_tagger(path: Path, width: int, hidden: int = 8, seed: int = 0) -> Path:
    """A keyword tagger with random weights for a sentence model of `width`, saved as .npz."""
    import numpy as np

    from pipeline.keyphrases.tagger import N_FLAGS, Tagger, build_network

    torch.manual_seed(seed)
    net = build_network(width + N_FLAGS, hidden)
    Tagger({k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()},
           vocabulary=frozenset({"sleeves", "collar"})).save(path)
    return path
