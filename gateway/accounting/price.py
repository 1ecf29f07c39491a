"""A deployment's price: USD per million tokens, exact (Decimal), and what a request costs at it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: Decimal = ZERO
    output_per_mtok: Decimal = ZERO
    cached_input_per_mtok: Decimal | None = None  # provider prompt-cache discount, if any
    # prompt tokens written to the provider's prompt cache (Anthropic: 1.25x input), if any
    cache_write_input_per_mtok: Decimal | None = None
    # Prices of the provider's service tiers other than the standard one (OpenAI's "flex" at
    # half price, "priority" above it), by the tier's name as the upstream reports it.
    tiers: tuple[tuple[str, Price], ...] = ()
    # prompt tokens written to a 1-hour prompt cache (Anthropic: 2x input), if priced apart
    cache_write_1h_input_per_mtok: Decimal | None = None
    # audio tokens in the prompt and the answer (OpenAI's audio models), if priced apart
    audio_input_per_mtok: Decimal | None = None
    audio_output_per_mtok: Decimal | None = None
    # image tokens in the prompt and the answer (Gemini's image models: $30 per 1M image tokens
    # out where text is $2.50), if priced apart
    image_input_per_mtok: Decimal | None = None
    image_output_per_mtok: Decimal | None = None
    # Long-context prices (Gemini 2.5 Pro and Claude Sonnet 4 above 200k prompt tokens,
    # GPT-5.4 above 272k): (threshold, price), ascending. A request whose prompt has more
    # tokens than a threshold pays that price for every token, its answer's too.
    long_context: tuple[tuple[int, Price], ...] = ()
    # USD per web search by the search context size asked ("low", "medium", "high"): OpenAI's
    # search models, Anthropic's web search tool, Gemini's grounding, Perplexity's request fee
    web_search_usd: tuple[tuple[str, Decimal], ...] = ()
    web_search_per_prompt: bool = False  # Gemini 2.x: one charge a grounded prompt
    # reasoning tokens (part of the completion) where priced apart from the answer's: Alibaba's
    # Qwen in thinking mode ($4 per 1M where its answers are $1.20), Perplexity's deep research
    reasoning_output_per_mtok: Decimal | None = None
    # Perplexity's citation tokens (on top of the prompt: the sources its answer read)
    citation_input_per_mtok: Decimal | None = None

    def for_tier(self, tier: str | None) -> Price:
        """The price of the named service tier, else this (standard) one."""
        if tier is not None:
            for name, price in self.tiers:
                if name == tier:
                    return price
        return self

    def long_context_tier(self, prompt_tokens: int) -> tuple[int, Price] | None:
        """The long-context (threshold, price) a prompt of this many tokens is billed at, if
        any: the highest threshold it is longer than (the provider counts every prompt token,
        cached ones too)."""
        chosen = None
        for above, price in self.long_context:
            if prompt_tokens > above:
                chosen = (above, price)
        return chosen

    def at_prompt(self, prompt_tokens: int) -> Price:
        """The price a request with a prompt of this many tokens is billed at."""
        tier = self.long_context_tier(prompt_tokens) if self.long_context else None
        return self if tier is None else tier[1]

    def cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        *,
        audio_prompt_tokens: int = 0,
        audio_completion_tokens: int = 0,
        web_searches: int = 0,
        web_search_size: str | None = None,
        reasoning_tokens: int = 0,
        citation_tokens: int = 0,
        image_prompt_tokens: int = 0,
        image_completion_tokens: int = 0,
    ) -> Decimal:
        """`prompt_tokens` counts every prompt token once; `cached_tokens` (read from the
        provider's prompt cache) and `cache_write_tokens` (written to it) are parts of it, and
        `cache_write_1h_tokens` (written to the 1-hour cache) are part of the written ones.
        Audio tokens (OpenAI's audio models: 16x-33x the text price) are parts of the prompt and
        the completion, priced at the audio prices where there are some; image tokens likewise
        at the image prices. A prompt above a
        long-context threshold bills everything at that threshold's prices. Web searches are
        billed apiece, at the price of the search context size asked (medium if none).
        Reasoning tokens are part of the completion; citation tokens are not of the prompt."""
        if not (
            self.long_context or cached_tokens or cache_write_tokens or citation_tokens
            or audio_prompt_tokens or audio_completion_tokens or image_prompt_tokens
            or image_completion_tokens or reasoning_tokens or web_searches
        ):  # fmt: skip
            # the router's estimates, most rows: prompt and answer at their prices
            total = prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
            return total / MILLION
        at = self.at_prompt(prompt_tokens)
        tokens = at._cost_usd(
            prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
            cache_write_1h_tokens, citation_tokens,
        )  # fmt: skip
        if not (
            audio_prompt_tokens or audio_completion_tokens or image_prompt_tokens
            or image_completion_tokens or reasoning_tokens or web_searches
        ):  # fmt: skip
            return tokens
        # the parts of the prompt and the answer priced apart from their text, at the price
        # of the threshold the prompt passed
        for count, price, text, whole in (
            (audio_prompt_tokens, at.audio_input_per_mtok, at.input_per_mtok, prompt_tokens),
            (image_prompt_tokens, at.image_input_per_mtok, at.input_per_mtok, prompt_tokens),
            (audio_completion_tokens, at.audio_output_per_mtok, at.output_per_mtok,
             completion_tokens),
            (image_completion_tokens, at.image_output_per_mtok, at.output_per_mtok,
             completion_tokens),
            (reasoning_tokens, at.reasoning_output_per_mtok, at.output_per_mtok,
             completion_tokens),
        ):  # fmt: skip
            if count and price is not None:
                tokens += min(max(count, 0), whole) * (price - text) / MILLION
        if web_searches <= 0 or not self.web_search_usd:
            return tokens
        return tokens + self.web_search_cost_usd(web_searches, web_search_size)

    def web_search_cost_usd(self, searches: int, size: str | None = None) -> Decimal:
        """What `searches` web searches cost at the search context `size` (else medium)."""
        prices = dict(self.web_search_usd)
        each = prices.get(size or "medium") or prices.get("medium") or max(prices.values())
        return (1 if self.web_search_per_prompt else searches) * each

    def _cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        cache_write_tokens: int,
        cache_write_1h_tokens: int,
        citation_tokens: int,
    ) -> Decimal:
        if not cached_tokens and not cache_write_tokens:
            total = prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        else:
            total = self._prompt_cache_cost(
                prompt_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens
            )
            total += completion_tokens * self.output_per_mtok
        if citation_tokens > 0 and self.citation_input_per_mtok is not None:
            total += citation_tokens * self.citation_input_per_mtok
        return total / MILLION

    def _prompt_cache_cost(
        self, prompt: int, cached_tokens: int, writes: int, hours: int
    ) -> Decimal:
        """The prompt's cost (per million) with tokens read from and written to the cache."""
        cached = min(max(cached_tokens, 0), prompt)
        written = min(max(writes, 0), prompt - cached)
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        write_price = (
            self.input_per_mtok
            if self.cache_write_input_per_mtok is None
            else self.cache_write_input_per_mtok
        )
        hour = min(max(hours, 0), written)
        hour_price = (
            write_price
            if self.cache_write_1h_input_per_mtok is None
            else self.cache_write_1h_input_per_mtok
        )
        return (
            (prompt - cached - written) * self.input_per_mtok
            + cached * cached_price
            + (written - hour) * write_price
            + hour * hour_price
        )
