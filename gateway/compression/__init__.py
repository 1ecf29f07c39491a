"""Prompt compression: lossless normalisation, query-aware extraction, surprisal pruning."""

from gateway.compression.compressor import CompressionResult, PromptCompressor, Pruner
from gateway.compression.options import (
    MODE_HEADER,
    RATIO_HEADER,
    CompressionOptions,
    Mode,
    resolve_options,
)
from gateway.compression.prefix import PrefixMemory
from gateway.compression.relevance import Embedder
from gateway.compression.tokens import TiktokenCounter, TokenCounter

__all__ = [
    "MODE_HEADER",
    "RATIO_HEADER",
    "CompressionOptions",
    "CompressionResult",
    "Embedder",
    "Mode",
    "PrefixMemory",
    "PromptCompressor",
    "Pruner",
    "TiktokenCounter",
    "TokenCounter",
    "resolve_options",
]
