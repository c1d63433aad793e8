"""Target keyword extraction: rule-made candidate phrases ranked and filtered by KeyBERT.

Public API: `default_model_path`, `load_keyword_model`, `extract_keywords`, `extract_file`,
`Selection`.
"""

from pipeline.keyphrases.candidates import generate_candidates
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
]
