"""What a cache verifier needs to know about a text: its content words, numbers, negations,
comparison operators, polar words and names. Pure functions, no model.

The semantic cache compares two questions by embedding similarity; these facts let the
verifier see *what* differs between them ("France" vs "Germany", "x > 5" vs "x < 5", "not").
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

# Emoji and other pictographs, arrows, currency and technical signs, with the joiners,
# variation selectors and skin tones that make one emoji of several code points.
_SIGNS = (
    "\u00a2-\u00a5\u00a9\u00ae\u00b0\u20a0-\u20cf\u2100-\u214f\u2190-\u21ff"
    "\u2300-\u23ff\u2500-\u27bf\u2900-\u2bff\U0001f000-\U0001faff"
)
_TOKEN = re.compile(
    # identifiers mixing letters and digits (a hash, an order or ticket number), whole
    # (not a number with its unit or ordinal glued on: 1000mg, 2000mAh, 1920x1080, 100000th)
    r"(?<![\w.-])(?!\d+(?:[A-Za-z]+|[xX]\d+)\b)(?=[A-Za-z_]*\d)(?=[0-9_]*[A-Za-z])[A-Za-z0-9_]{6,}\b"
    r"|\d+(?::\d+)+"  # times 3:59
    r"|\d+(?:[.,]\d+)*(?:st|nd|rd|th)?"  # 93,000 / 4.17 / 15th
    r"|[A-Za-z](?:[A-Za-z'’]*[A-Za-z])?(?:[^\W\x00-\x7f]\w*)?"  # words incl. don't, café
    r"|[^\W\x00-\x7f]\w*"  # words of other scripts: Ärger, 北京, مرحبا
    r"|>=|<=|!=|==|=>|<>|[<>=≥≤≠]"  # comparison operators
    rf"|[{_SIGNS}][{_SIGNS}\u200d\ufe0f\u20e3]*"  # 🔥, 👍🏽, €
)
_ORDINAL = re.compile(r"(\d)(st|nd|rd|th)$")
_IDENTIFIER = re.compile(r"(?!\d+(?:[a-z]+|x\d+)$)(?=[a-z_]*\d)(?=[0-9_]*[a-z])[a-z0-9_]{6,}")

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "dozen": "12", "twice": "2", "once": "1", "half": "0.5",
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5",
}  # fmt: skip
# "one"/"first"/"second" are too often not numbers ("one of", "at first", "a second"):
# they count only when the other side has a digit to compare them with.
_WEAK_NUMBER_WORDS = {"one", "first", "second", "once", "half"}

NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor",
    "without", "cannot", "cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt",
    "werent", "wont", "wouldnt", "shouldnt", "couldnt", "hasnt", "havent", "hadnt", "aint",
}  # fmt: skip

OPERATORS = {
    ">": ">", "<": "<", ">=": ">=", "=>": ">=", "≥": ">=", "<=": "<=", "≤": "<=",
    "=": "=", "==": "=", "!=": "!=", "<>": "!=", "≠": "!=",
}  # fmt: skip

# Two-sided word groups: a word on one side and a word of the other side of the same group
# in the other text flips the meaning ("increase" vs "decrease", "before" vs "after").
_POLAR_GROUPS: tuple[tuple[str, str], ...] = (
    ("greater larger bigger more higher above exceed exceeds greatest largest biggest most "
     "highest max maximum upper over",
     "less smaller fewer lower below under least smallest fewest lowest min minimum"),
    ("best better good great top positive advantage advantages pros benefit benefits "
     "excellent amazing awesome wonderful fantastic superb outstanding brilliant",
     "worst worse bad poor negative disadvantage disadvantages cons drawback drawbacks "
     "terrible awful horrible dreadful lousy disappointing mediocre"),
    ("before earlier prior previous first oldest start starting begin beginning",
     "after later next following last latest newest end ending finish"),
    ("increase increases increased increasing rise rises rising rose raise raised grow grows "
     "growing grew gain gains gained climb climbed jump jumped boost up",
     "decrease decreases decreased decreasing fall falls falling fell drop drops dropped "
     "decline declines declined reduce reduced reducing shrink shrank down lower lowers lowered "
     "lowering"),
    ("buy buys buying bought purchase purchased import imports acquire acquired",
     "sell sells selling sold export exports"),
    ("win wins winning won victory", "lose loses losing lost defeat loss"),
    ("gain gains gained gaining", "lose loses losing lost"),
    ("pass passed passing", "fail fails failed failing"),
    ("maximum maximize maximise", "minimum minimize minimise"),
    ("online", "offline"),
    ("import imports imported", "export exports exported"),
    ("install installing installed", "uninstall uninstalling uninstalled"),
    ("before", "after"),
    ("early earlier earliest", "late later latest"),
    ("yesterday", "tomorrow"),
    ("above", "below"),
    ("inside", "outside"),
    ("sunrise", "sunset"),
    ("male man men boy boys husband father son brother he him his",
     "female woman women girl girls wife mother daughter sister she her hers"),
    ("north northern", "south southern"),
    ("east eastern", "west western"),
    ("left", "right"),
    ("true", "false"),
    ("open opened opening", "close closed closing shut"),
    ("hot warm heat", "cold cool"),
    ("cheap cheaper cheapest inexpensive", "expensive pricey costly"),
    ("fast faster fastest quick quicker quickest", "slow slower slowest"),
    ("easy easier easiest simple", "hard harder hardest difficult"),
    ("young younger youngest", "old older elderly"),
    ("new newer newest", "old older oldest"),
    ("short shorter shortest", "long longer longest"),
    ("add adding added", "remove removing removed delete deleting deleted"),
    ("enable enabled enabling", "disable disabled disabling"),
    ("include included including", "exclude excluded excluding"),
    ("inside internal inner", "outside external outer"),
    ("input inputs", "output outputs"),
    ("upload uploading", "download downloading"),
    ("send sending sent", "receive receiving received"),
    ("encrypt encryption", "decrypt decryption"),
    ("encode encoding", "decode decoding"),
    ("push", "pull"),
    ("ascending", "descending"),
    ("horizontal horizontally", "vertical vertically"),
    ("synchronous sync", "asynchronous async"),
    ("public", "private"),
    ("static", "dynamic"),
    ("mutable", "immutable"),
    ("uppercase", "lowercase"),
    ("success successful succeed", "failure fail failed"),
    ("valid", "invalid"),
    ("legal", "illegal"),
    ("possible", "impossible"),
    ("allow allowed permit", "ban banned forbid forbidden prohibit prohibited"),
    ("accept accepted", "reject rejected"),
    ("love loves loved like likes liked enjoy enjoys enjoyed",
     "hate hates hated dislike dislikes disliked"),
    ("rich wealthy", "poor"),
    ("strong strength", "weak weakness"),
    ("safe safety", "dangerous unsafe risky"),
    ("full", "empty"),
    ("always", "never"),
    ("profit profits", "loss losses"),
    ("borrow borrowing", "lend lending"),
    ("arrive arrival", "depart departure"),
    ("client", "server"),
    ("debit", "credit"),
    ("asset assets", "liability liabilities"),
    ("min", "max"),
    # one relation seen from either end: MiniLM's word vectors put them at cosine 0.83-0.88,
    # so each passed for the other's synonym ("rights of a landlord" / "of a tenant", 0.97)
    ("landlord landlords", "tenant tenants"),
    ("buyer buyers purchaser purchasers", "seller sellers vendor vendors"),
    ("employer employers", "employee employees"),
    ("lender lenders creditor creditors", "borrower borrowers debtor debtors"),
    ("inbound incoming", "outbound outgoing"),
)  # fmt: skip


def _polar_index() -> dict[str, tuple[tuple[int, int], ...]]:
    """word -> every (group, side) it belongs to ("lose" opposes both "win" and "gain")."""
    index: dict[str, tuple[tuple[int, int], ...]] = {}
    for gi, (side0, side1) in enumerate(_POLAR_GROUPS):
        for side, words in enumerate((side0, side1)):
            for w in words.split():
                index[w] = (*index.get(w, ()), (gi, side))
    return index


POLAR = _polar_index()


def _words(text: str) -> list[str]:
    return text.split()


STOPWORDS = frozenset(
    _words(
        """
        a an the and or but if then else of to in on at by for with from into onto upon about as
        than so such that this these those there here it its it's itself i me my mine we us our
        ours you your yours they them their theirs he him his she her hers who whom whose which
        what when where why how whether is am are was were be been being do does did done doing
        have has had having will would shall should can could may might must also just only very
        really quite too much many some any each every all both either one ones other another own
        same more most s t ll ve re d m o get gets got getting go goes going went way ways thing
        things something anything someone anyone people person please tell know want need like
        said says say mr mrs ms dr etc vs via per percent pct while during after before up down
        out over under again further once also yet still even ever not no nor i'm i've i'd you're
        we're they're it'll i'll yes ok okay well now today whose within
        """
    )
)

# Names people type in lower case ("capital of france", "learn python"): always names.
KNOWN_NAMES = frozenset(
    _words(
        """
        afghanistan africa albania algeria america american argentina armenia asia australia
        austria bangladesh belgium bolivia brazil britain british bulgaria cambodia canada
        chile china chinese colombia croatia cuba cyprus czech denmark egypt england english
        ethiopia europe european finland france french georgia germany german ghana greece
        greek hungary iceland india indian indonesia iran iraq ireland irish israel italy
        italian jamaica japan japanese jordan kenya korea korean kuwait laos lebanon libya
        malaysia mexico mexican mongolia morocco myanmar nepal netherlands dutch nigeria norway
        pakistan peru philippines poland polish portugal portuguese qatar romania russia
        russian saudi scotland serbia singapore slovakia somalia spain spanish sweden swedish
        switzerland syria taiwan thailand turkey turkish uganda ukraine uk usa venezuela
        vietnam wales yemen zimbabwe hindi arabic latin bengali urdu tamil telugu
        london paris berlin tokyo beijing shanghai delhi mumbai bangalore chennai kolkata
        moscow rome madrid sydney toronto chicago boston dubai seattle texas california florida
        python java javascript typescript kotlin scala perl haskell ruby php golang rust swift
        html css sql mysql postgresql mongodb django flask react angular
        google facebook amazon microsoft apple iphone ipad android samsung quora youtube
        instagram twitter whatsapp netflix uber tesla linkedin snapchat reddit wikipedia
        windows linux ubuntu macos ios excel photoshop bitcoin ethereum
        monday tuesday wednesday thursday friday saturday sunday
        january february april june july september october november december
        """
    )
)  # ("may" and "march" are words first; "august" an adjective)

# Grammatical and sentence-function words that never count as "what differs".
_FUNCTION_ONLY = STOPWORDS - set(POLAR) - NEGATIONS


@dataclass(frozen=True, slots=True)
class TextFacts:
    tokens: tuple[str, ...]  # lower-cased tokens in order
    content: frozenset[str]  # stems of content words
    numbers: Counter[str]  # canonical numbers (digits and number words)
    weak_numbers: Counter[str]  # number words that may not be numbers ("one of")
    negations: int
    operators: Counter[str]
    polar: frozenset[tuple[int, int]]  # (group, side)
    names: frozenset[str]  # lower-cased capitalised words that are not sentence-initial
    acronyms: frozenset[str]  # lower-cased ALL-CAPS tokens, e.g. "us", "nasa"
    intent: str = "other"  # what kind of answer the question asks for (see `question_intent`)
    code: tuple[str, ...] = ()  # the tokens of its code spans (fenced or backticked), exactly
    skeleton: tuple[str, ...] = ()  # the code in its prose: symbols and the words they touch
    # the words inside double quotes, each quote in order: the text to translate, check or
    # rewrite, which no rewording of the request may change ("Me and him" is not "Him and me")
    quoted: tuple[tuple[str, ...], ...] = ()
    # the data a task instruction is applied to ("Classify the sentiment of this review: the
    # battery life is terrible"), its words in order; None when the text is not such a task
    payload: tuple[str, ...] | None = None
    code_like: bool = False  # it holds code (a span, or a symbol no sentence would use)
    # The numbers in the order they come, and the words from the first to the last of them
    # with each number as "#": "10 divided by 2" and "2 divided by 10" share the words but
    # not the order (see `verifier.hard_difference`).
    number_order: tuple[str, ...] = ()
    number_span: tuple[str, ...] = ()
    when: frozenset[str] = frozenset()  # "past" / "present" / "future" (see `_times`)
    tense: str | None = None  # a question's: "past" / "present" / "future" (`question_tense`)
    # The names (and acronyms) in order, runs of them as one ("apple music"), and the words
    # from the first to the last with each as "@": "Is plan A better than plan B?" and "Is plan
    # B better than plan A?", "USD to EUR" and "EUR to USD" share the words but not the order.
    name_order: tuple[str, ...] = ()
    name_span: tuple[str, ...] = ()
    # Words the rules above cannot read, compared as written: identifiers ("8f3a2b1c9d",
    # "INV20931"), words of other scripts ("франции", "我爱你") and emoji. The embedding barely
    # sees them (an emoji is an unknown token to MiniLM: "What does 🔥 mean?" / "💧" are
    # cosine 1.0), so one that differs is a different question.
    verbatim: Counter[str] = field(default_factory=Counter)
    # how often each content stem occurs: a long turn (a context and its question, a template
    # with its data) may hit only with the same words as often, give or take synonyms
    content_counts: Counter[str] = field(default_factory=Counter)


# When a question is about, relative to when it is asked: the past ("yesterday", "last year"),
# the present ("today", "this week") or the future ("tomorrow", "next month"). "Who won this
# year?" and "Who won last year?" read alike and have different answers; "this morning" and
# "today" are the same direction and may stand in for each other.
_DEICTIC_DAYS = {
    "yesterday": "past",
    "today": "present",
    "tonight": "present",
    "tomorrow": "future",
}
_TIME_SHIFTERS = {
    "this": "present", "current": "present", "last": "past", "past": "past", "previous": "past",
    "next": "future", "coming": "future", "upcoming": "future",
}  # fmt: skip
_TIME_UNITS = frozenset(
    _words(
        "year month week weekend day night morning afternoon evening season quarter semester "
        "term summer winter spring autumn fall decade century monday tuesday wednesday "
        "thursday friday saturday sunday"
    )
)


def _times(tokens: Sequence[str]) -> frozenset[str]:
    found: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok in _DEICTIC_DAYS:
            found.add(_DEICTIC_DAYS[tok])
        elif tok in _TIME_SHIFTERS and i + 1 < len(tokens) and tokens[i + 1] in _TIME_UNITS:
            found.add(_TIME_SHIFTERS[tok])
    return frozenset(found)


def _number_span(slots: list[str]) -> tuple[str, ...]:
    """The slots from the first number to the last ("#" for each number)."""
    marks = [i for i, s in enumerate(slots) if s == "#"]
    return tuple(slots[marks[0] : marks[-1] + 1]) if len(marks) > 1 else ()


def stem(word: str) -> str:
    """A deliberately light suffix stripper: maps inflections together, never to < 3 chars."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.replace("'", "")
    for suffix, repl in (
        ("ies", "y"), ("sses", "ss"), ("ing", ""), ("ied", "y"), ("ed", ""), ("es", ""), ("s", ""),
    ):  # fmt: skip
        if w.endswith(suffix) and len(w) - len(suffix) + len(repl) >= 3 and not w.endswith("ss"):
            w = w[: len(w) - len(suffix)] + repl
            break
    # "running" -> "runn" -> "run"; "stopped" -> "stopp" -> "stop"
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    return w


def canonical_number(token: str) -> str | None:
    t = _ORDINAL.sub(r"\1", token)
    if ":" in t:
        return t
    t = t.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", t) else t.replace(",", ".")
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    return format(d.normalize(), "f")


# What people wrap a question in when they talk to an assistant. It changes neither the
# question nor its answer, yet costs MiniLM a lot: "Can you tell me what the capital of France
# is?" against "What is the capital of France?" is cosine 0.88 with it, 0.98 without. Only
# whole wrappers at the edges go: "can you" only before a verb of telling or doing-for-me
# ("can you swim?" keeps it), and "please" / "thanks" only as the first or last words.
_LEADING_WRAPPERS = re.compile(
    r"^(?:"
    r"(?:hi|hello|hey|hiya|greetings|good (?:morning|afternoon|evening))(?: there)?\b"
    r"(?![\s,!.:;-]*world\b)[\s,!.:;-]*"  # but "hello world" is a program
    r"|(?:please|pls|plz|kindly)\b[\s,:]*"
    r"|(?:can|could|would|will) you(?: please| kindly)?\s+"
    r"(?=(?:tell|show|give|explain|help|describe|list|write|summari[sz]e|translate|define|name"
    r"|provide|suggest|recommend|find|let)\b)"
    r"|(?:tell|show) me(?: about\b)?[\s,:]*"
    r"|(?:let me know|do you know|i want to know|i(?: would|'d) like to know|i wonder"
    r"|i was wondering|i am wondering|i'm wondering)\b(?: if\b| whether\b)?[\s,:]*"
    r")",
    re.IGNORECASE,
)
_TRAILING_WRAPPERS = re.compile(
    r"(?P<gap>[\s,.!?]*)\b(?P<word>please|pls|plz|thanks|thank you|thx|ty)"
    r"(?: so much| very much| in advance)?[\s.!?]*$",
    re.IGNORECASE,
)
# "Is a tomato a fruit or not?" asks what "Is a tomato a fruit?" asks: a last "or not" only
# spells out the other answer, and it is no negation.
_OR_NOT = re.compile(r"[\s,]+or not[\s.!?]*$", re.IGNORECASE)
# before these, a last "please" is the word itself ("how do you say please")
_PLEASE_AS_WORD = frozenset({"say", "said", "saying", "says", "word", "words", "the", "and"})


def _strip_trailing(text: str) -> str:
    m = _TRAILING_WRAPPERS.search(text)
    if m is None:
        return text
    before = text[: m.start()]
    previous = before.rsplit(None, 1)[-1].lower() if before.strip() else ""
    if m.group("word").lower() in ("please", "pls", "plz"):
        if previous in _PLEASE_AS_WORD:
            return text
    elif not any(c in m.group("gap") for c in ",.!?"):
        return text  # "thank you" ends a sentence of its own, not "say please and thank you"
    return before


def strip_wrappers(text: str) -> str:
    """The question without its conversational wrapping; the text itself if nothing is left."""
    t = text.strip()
    while True:
        shorter = _OR_NOT.sub("", _strip_trailing(_LEADING_WRAPPERS.sub("", t, count=1)))
        if shorter == t:
            break
        t = shorter
    return t if t.strip(" ?!.,") else text.strip()


# Code. A question about code changes its answer with one symbol ("x += 3" / "x -= 3",
# "d.get('b')" / "d['b']", "true" / '"true"'), and the embedding barely moves: the word
# tokens above drop every symbol that is not a comparison. So code is compared as written:
# - the tokens inside fenced blocks and `backticks` must be equal (indentation included);
# - when either text holds code outside such spans (a symbol no sentence would use: `=`,
#   `+`, `*`, braces, `x % 2`, `a / b`, `d[k]`, `!done`, `f(`...), both texts' skeletons
#   must be equal: every symbol that is not closing punctuation, in order, with the words
#   and numbers that touch one (operands, identifiers, and/or between them).
# Closing punctuation is a `.?!,;:` run before a space or the end; apostrophes, hyphens and
# dots inside words ("don't", "well-known", "U.S.") belong to the word. Symbols that prose
# uses as well do not make a text code: `AT&T`, `Standard & Poor's`, `5%`, `HTTP/2`, an
# editor's `[brackets]` in a quote, TeX quotes. So prose with no code is never judged by
# this (on the MSRP news pairs it vetoes no hit that the rest of the verifier allowed).
_FENCE = re.compile(r"```([^\n`]*)(.*?)(?:```|\Z)", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_CODE_PIECE = re.compile(r"\w+|[^\w\s]")
_PROSE_PIECE = re.compile(
    r"(?P<word>\w+(?:(?:['’.\-]|(?<=\d),(?=\d))\w+)*)"  # words, numbers, U.S., don't, 93,000
    r"|(?P<sep>[.?!…,;:]+(?=\s|$))"  # closing punctuation
    r"|(?P<sym>\S)"  # anything else, one character at a time
)
_ALWAYS_CODE = frozenset("=+*\\|^~{}<>≥≤≠")
_LOGICAL_WORDS = frozenset({"and", "or"})


_QUOTED = re.compile(r'"([^"\n]{1,400})"|“([^”\n]{1,400})”')


def quoted_spans(text: str) -> tuple[tuple[str, ...], ...]:
    """The lower-cased words of each double-quoted span, in order."""
    return tuple(
        tuple(w.lower() for w in _TOKEN.findall(m.group(1) or m.group(2)))
        for m in _QUOTED.finditer(text)
    )


# A task and its data. Apps fill one instruction with data: "Classify the sentiment of this
# review: <review>", "Translate to French: <text>", "Fix the grammar: <sentence>". The data
# decides the answer: "...: the battery life is terrible" and "...: ... is great" are cosine
# 0.97 and one word apart, which the score barely sees. So when both texts are a short
# instruction naming a task, a colon, then the data, the data must be the same words.
_TASK_WORDS = frozenset(
    _words(
        "classify classification categorize categorise categorization label tag translate "
        "translation summarize summarise summary extract rate rating score grade fix correct "
        "proofread rewrite rephrase paraphrase detect identify analyze analyse analysis "
        "evaluate convert format parse sort count spell transliterate simplify shorten expand "
        "complete continue tokenize normalize normalise redact anonymize anonymise sentiment "
        "topic category intent language emotion tone review tweet headline email message "
        "comment sentence text passage paragraph document article input query"
    )
)
_TASK_COLON = re.compile(r"^(?P<task>[^:\n]{3,120}?):\s+(?P<data>\S.*)$", re.S)
_MAX_TASK_WORDS = 12


def task_payload(text: str) -> tuple[str, ...] | None:
    """The words of the data after a task instruction and its colon (see `_TASK_WORDS`)."""
    m = _TASK_COLON.match(text.strip())
    if m is None:
        return None
    task = [w.lower() for w in _TOKEN.findall(m.group("task"))]
    if not task or len(task) > _MAX_TASK_WORDS or not _TASK_WORDS.intersection(task):
        return None
    data = expand_contractions(m.group("data").replace("’", "'").lower())  # "what's": "what is"
    return tuple(_TOKEN.findall(data)) or None


def code_spans(text: str) -> tuple[tuple[str, ...], str]:
    """The tokens of the text's code spans, and the text with those spans blanked out."""
    tokens: list[str] = []

    def fenced(m: re.Match[str]) -> str:
        tokens.append("```" + m.group(1).strip().lower())
        for line in m.group(2).split("\n"):
            if line.strip():
                line = line.expandtabs(4)
                tokens.append(f"\n{len(line) - len(line.lstrip())}")  # indentation is syntax
                tokens.extend(_CODE_PIECE.findall(line))
        tokens.append("```")
        return " "

    def inline(m: re.Match[str]) -> str:
        tokens.extend(("`", *_CODE_PIECE.findall(m.group(1)), "`"))
        return " "

    rest = _INLINE.sub(inline, _FENCE.sub(fenced, text))
    return tuple(tokens), rest


def code_skeleton(text: str) -> tuple[bool, tuple[str, ...]]:
    """Whether the text holds code outside spans, and its skeleton (see above)."""
    pieces = list(_PROSE_PIECE.finditer(text))
    kinds = [m.lastgroup for m in pieces]
    code_like = False
    for m, kind in zip(pieces, kinds, strict=True):
        if kind == "sym" and _is_code_symbol(text, m.start()):
            code_like = True
            break
    skeleton: list[str] = []
    kept_previous = False
    for i, (m, kind) in enumerate(zip(pieces, kinds, strict=True)):
        keep = kind == "sym"
        if kind == "word":
            touches = (i > 0 and kinds[i - 1] == "sym") or (
                i + 1 < len(kinds) and kinds[i + 1] == "sym"
            )
            keep = touches or (kept_previous and m.group().lower() in _LOGICAL_WORDS)
        if keep:
            skeleton.append(m.group())
        kept_previous = keep
    return code_like, tuple(skeleton)


def _is_code_symbol(text: str, at: int) -> bool:
    c = text[at]
    if c in _ALWAYS_CODE:
        return True
    before = text[at - 1] if at > 0 else " "
    after = text[at + 1] if at + 1 < len(text) else " "
    if c == "/":  # a / b, 10 // 3, https://; not HTTP/2, and/or
        return before.isspace() or after.isspace() or "/" in (before, after)
    if c == "%":  # 7 % 3, x%2; not 5%
        return not before.isdigit()
    if c == "&":  # &&, &=, &x; not AT&T or "Standard & Poor's"
        return "&" in (before, after) or after == "=" or before.isspace() != after.isspace()
    if c == "[":  # d['b'], a[i], [], ['x']; not an editor's "[the miniseries]" in a quote
        return before.isalnum() or before in "_)]" or after in "]'\""
    if c == "!":  # !done; a closing "!" is punctuation
        return after.isalnum() or after in "_(!"
    if c == "(":  # a call: print(x), d.get(
        return before.isalnum() or before == "_"
    return False


def analyse(text: str) -> TextFacts:
    # one spelling of "é" (a PDF's "e" + accent, a keyboard's one character): the words of
    # other scripts are compared as written
    text = strip_wrappers(unicodedata.normalize("NFC", text))
    code, prose = code_spans(text)
    code_like, skeleton = code_skeleton(prose)
    raw = _TOKEN.findall(text)
    tokens: list[str] = []
    numbers: Counter[str] = Counter()
    weak: Counter[str] = Counter()
    operators: Counter[str] = Counter()
    polar: set[tuple[int, int]] = set()
    names: set[str] = set()
    acronyms: set[str] = set()
    verbatim: Counter[str] = Counter()
    content_counts: Counter[str] = Counter()
    negations = 0
    order: list[str] = []  # the numbers, in order
    named: list[int] = []  # indexes in `tokens` of names and acronyms
    slots: list[str] = []  # every token, "#" for a number, words stemmed
    sentence_start = True
    starts = _sentence_starts(text, raw)
    for i, tok in enumerate(raw):
        low = tok.lower().replace("’", "'")
        if "'" in low and not low.endswith("n't"):
            # "what's" -> "what", "France's" -> "france": the clitic never carries the meaning
            tok = tok[: low.index("'")]
            low = low[: low.index("'")]
            if not tok:
                continue
        tokens.append(low)
        sentence_start = i in starts
        if tok in OPERATORS:
            operators[OPERATORS[tok]] += 1
            slots.append(OPERATORS[tok])
            continue
        if not low.isascii() or _IDENTIFIER.fullmatch(low):
            verbatim[low] += 1
            slots.append(low)
            continue
        if tok[0].isdigit():
            num = canonical_number(tok)
            if num is not None:
                numbers[num] += 1
                order.append(num)
            slots.append("#" if num is not None else tok)
            continue
        strong = low in NUMBER_WORDS and low not in _WEAK_NUMBER_WORDS
        if strong:
            order.append(NUMBER_WORDS[low])
        slots.append("#" if strong else stem(low))
        flat = low.replace("'", "")
        if flat in NEGATIONS or low.endswith("n't"):
            negations += 1
            continue
        if low in NUMBER_WORDS:
            (weak if low in _WEAK_NUMBER_WORDS else numbers)[NUMBER_WORDS[low]] += 1
            if low not in POLAR:
                continue
        if low in POLAR:
            polar.update(POLAR[low])
        if len(tok) >= 2 and tok.isupper() and tok.isalpha():
            acronyms.add(low)
            named.append(len(tokens) - 1)
        elif (tok[0].isupper() and not sentence_start and low != "i") or low in KNOWN_NAMES:
            names.add(low)
            named.append(len(tokens) - 1)
        # A polar word is content too ("cheap" / "lightweight" shoes: one slot, changed), as
        # long as it is no grammatical word ("more", "up", "his")
        if low not in _FUNCTION_ONLY and not (low in POLAR and low in STOPWORDS):
            content_counts[stem(low)] += 1
    return TextFacts(
        tokens=tuple(tokens),
        content=frozenset(content_counts),
        numbers=numbers,
        weak_numbers=weak,
        negations=negations,
        operators=operators,
        polar=frozenset(polar),
        names=frozenset(names),
        acronyms=frozenset(acronyms),
        intent=question_intent(tokens),
        code=code,
        skeleton=skeleton,
        code_like=code_like or bool(code),
        quoted=quoted_spans(prose),
        payload=task_payload(prose),
        number_order=tuple(order),
        number_span=_number_span(slots),
        when=_times(tokens),
        tense=question_tense(tokens),
        **_name_positions(tokens, named),
        verbatim=verbatim,
        content_counts=content_counts,
    )


# Words that join names without ordering them: "Python and Java" is "Java and Python".
_SYMMETRIC = frozenset({"and", "or", "nor", "vs", "versus", "&", ",", "with"})


def _name_positions(tokens: list[str], named: list[int]) -> dict[str, tuple[str, ...]]:
    """`name_order` and `name_span` (see `TextFacts`); empty unless two runs of names are
    joined by words that order them ("better than", "to", "from ... to")."""
    runs: list[list[int]] = []
    for i in named:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    if len(runs) < 2:
        return {}
    span: list[str] = []
    at = runs[0][0]
    for first, last in runs:
        span.extend(tokens[at:first])
        span.append("@")
        at = last + 1
    if all(t in _SYMMETRIC for t in span if t != "@"):
        return {}
    order = tuple(" ".join(tokens[first : last + 1]) for first, last in runs)
    return {"name_order": order, "name_span": tuple(span)}


_AUXILIARIES = frozenset(
    _words(
        "is are was were am do does did has have had can could will would should shall may "
        "might must"
    )
)
_MODALS = frozenset(_words("can could will would should shall may might must"))
_WH_INTENT = {
    "why": "reason", "when": "time", "where": "place", "who": "person", "whom": "person",
    "whose": "person", "what": "what", "which": "what", "how": "method",
}  # fmt: skip
_AMOUNT = frozenset(_words("many much long often old far big tall large fast expensive"))


def question_intent(tokens: Sequence[str]) -> str:
    """The kind of answer a question asks for, from how it opens: "reason" (why), "time",
    "place", "person", "amount" (how many / much / long...), "method" (how, in what way),
    "what", "yesno" ("is ...", "does ..."; "yesno-modal" for "can / should / would ..."),
    or "other" (a request, a statement)."""
    for i, tok in enumerate(tokens[:4]):
        if tok in _WH_INTENT:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if tok == "how" and nxt in _AMOUNT:
                return "amount"
            if tok == "what" and nxt == "way":
                return "method"
            return _WH_INTENT[tok]
        if i == 0 and tok in _AUXILIARIES:
            return "yesno-modal" if tok in _MODALS else "yesno"
        if i == 0 and tok not in ("in", "and", "so", "but", "then", "also", "or"):
            break
    return "other"


# The tense of a question's own verb, where an auxiliary carries it: "Is Pluto a planet?" and
# "Was Pluto a planet?", "Who is the CEO?" and "Who was the CEO?", "Does it work?" and "Will it
# work?" ask about different times. The perfect ("Has it arrived?") asks what "Did it arrive?"
# asks. Modals other than will/shall ("can", "could", "would") carry politeness, not time.
_TENSES = {
    "is": "present", "are": "present", "am": "present", "do": "present", "does": "present",
    "isn't": "present", "aren't": "present", "don't": "present", "doesn't": "present",
    "was": "past", "were": "past", "did": "past", "has": "past", "have": "past", "had": "past",
    "wasn't": "past", "weren't": "past", "didn't": "past", "hasn't": "past",
    "haven't": "past", "hadn't": "past",
    "will": "future", "shall": "future", "won't": "future",
}  # fmt: skip
_LEADS = frozenset(_WH_INTENT) | _AMOUNT | frozenset(_words("in on at of to for from and so"))


def question_tense(tokens: Sequence[str]) -> str | None:
    """The tense of the auxiliary that opens a question ("is ...", "what was ...", "how many
    people were ..."), or None for requests, statements and questions that open otherwise."""
    if not tokens or (tokens[0] not in _TENSES and tokens[0] not in _LEADS):
        return None
    asks = tokens[0] in _TENSES
    for tok in tokens[:5]:
        if tok in _WH_INTENT:
            asks = True
        if tok in _TENSES:
            return _TENSES[tok] if asks else None
        if tok not in _LEADS:
            if not asks:
                return None
            if tok in _MODALS:
                return None
    return None


def _sentence_starts(text: str, raw: list[str]) -> set[int]:
    """Indexes of tokens that open a sentence (their capital letter says nothing)."""
    starts = {0}
    pos = 0
    for i, tok in enumerate(raw):
        at = text.find(tok, pos)
        if at < 0:
            continue
        before = text[pos:at]
        if i > 0 and re.search(r"[.!?:;\"“(\n]\s*$", before):
            starts.add(i)
        pos = at + len(tok)
    return starts


_CONTRACTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"\b(what|where|who|how|when|why|there|that|it|he|she)'s\b", r"\1 is"),
        (r"\blet's\b", "let us"),
        (r"\bi'm\b", "i am"),
        (r"\bcan't\b", "cannot"),
        (r"\bwon't\b", "will not"),
        (r"\b(\w+)n't\b", r"\1 not"),
        (r"\b(\w+)'re\b", r"\1 are"),
        (r"\b(\w+)'ve\b", r"\1 have"),
        (r"\b(\w+)'ll\b", r"\1 will"),
        (r"\b(\w+)'d\b", r"\1 would"),
    )
)
_TRAILING = re.compile(r"[\s?!.]+$")
_SPACES = re.compile(r"\s+")


def embedding_text(text: str) -> str:
    """The form of a question that is embedded: surface noise removed, meaning kept.

    Case, contractions, closing punctuation and conversational wrapping ("can you tell me",
    "please", "hi!") move MiniLM's embedding more than they should ("What is the capital of
    France?" vs "what's the capital of france": cosine 0.91), so both the cached question and
    the new one are embedded in this form. The verifier reads the text with only its wrapping
    removed (capitals mark names).
    """
    t = expand_contractions(strip_wrappers(text.replace("’", "'")).lower())
    return _SPACES.sub(" ", _TRAILING.sub("", t))


def expand_contractions(text: str) -> str:
    """`text`, in lower case, with its contractions written out ("what's" -> "what is")."""
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text
