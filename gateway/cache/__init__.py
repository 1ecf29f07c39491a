"""Exact and semantic response cache: keys, policy, embedder, verifier, index, store.

The pipeline uses it through `gateway.pipeline.cache.CacheStage`; the app builds one
`ResponseCache` per process in its lifespan.
"""

from gateway.cache.policy import CachePolicy, RequestDirectives, directives
from gateway.cache.response_cache import CacheConfig, ResponseCache, SemanticResult

__all__ = [
    "CacheConfig",
    "CachePolicy",
    "RequestDirectives",
    "ResponseCache",
    "SemanticResult",
    "directives",
]
