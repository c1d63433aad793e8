"""Target keyword extraction: a learned tagger marks candidate phrases, KeyBERT ranks them.

Public API: `default_model_path`, `load_keyword_model`, `extract_keywords`, `extract_file`,
`Selection`, `naive_split` / `generate_candidates` (the model-free baseline).
"""

from pipeline.keyphrases.candidates import generate_candidates, naive_split
from pipeline.keyphrases.extract import extract_keywords
from pipeline.keyphrases.files import BadTextRecord, extract_file
from pipeline.keyphrases.model import (
    KeywordModel,
    Selection,
    default_model_path,
    load_keyword_model,
)

__all__ = [
    "BadTextRecord",
    "KeywordModel",
    "Selection",
    "default_model_path",
    "extract_file",
    "extract_keywords",
    "generate_candidates",
    "load_keyword_model",
    "naive_split",
]
