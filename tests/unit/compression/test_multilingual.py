"""Query-aware selection in scripts other than English: the same document, the same question,
the same verdict. Chinese has no spaces between words; Russian inflects; both must still
match the question to the paragraph that answers it."""

from __future__ import annotations

import pytest

from gateway.compression import CompressionOptions, PromptCompressor, TiktokenCounter
from gateway.compression.relevance import terms
from gateway.compression.sentences import sentence_spans

# (filler paragraph with a %d, the fact, a word of the answer, the question)
DOCS = {
    "english": (
        "The staff often talk about coffee, plants and the weather at weekends; these topics "
        "have nothing to do with deploying the project. Paragraph %d is only filler to make "
        "the document longer.",
        "The admin password of the servers is changed every seventeen days, and the backup "
        "server is in the Chengdu data centre.",
        "Chengdu",
        "According to the document, in which city is the backup server?",
    ),
    "chinese": (
        "公司的员工经常在周末讨论咖啡、植物和天气，这些话题与项目的部署过程毫无关系。"
        "第%d段只是填充文字，用来让文档变得更长一些。",
        "服务器的管理员密码每隔十七天更换一次，备份服务器位于成都数据中心。",
        "成都",
        "根据文档，备份服务器位于哪个城市？",
    ),
    "russian": (
        "Сотрудники часто обсуждают кофе, растения и погоду по выходным; эти темы не имеют "
        "никакого отношения к развёртыванию проекта. Абзац номер %d нужен только для того, "
        "чтобы сделать документ длиннее.",
        "Пароль администратора серверов меняется каждые семнадцать дней, а резервный сервер "
        "находится в дата-центре в Новосибирске.",
        "Новосибирске",
        "Согласно документу, в каком городе находится резервный сервер?",
    ),
    # The question inflects differently from the document ("резервного сервера").
    "russian-inflected": (
        "Сотрудники часто обсуждают кофе, растения и погоду по выходным; эти темы не имеют "
        "никакого отношения к развёртыванию проекта. Абзац номер %d нужен только для того, "
        "чтобы сделать документ длиннее.",
        "Пароль администратора меняется каждые семнадцать дней. Адрес резервного сервера: "
        "Новосибирск, улица Ленина, дом 5.",
        "Новосибирск",
        "Где находится резервный сервер?",
    ),
    "greek": (
        "Οι υπάλληλοι συζητούν συχνά για καφέ, φυτά και τον καιρό τα σαββατοκύριακα· αυτά τα "
        "θέματα δεν έχουν καμία σχέση με την ανάπτυξη του έργου. Η παράγραφος %d είναι μόνο "
        "γέμισμα για να γίνει το έγγραφο μεγαλύτερο.",
        "Ο κωδικός του διαχειριστή αλλάζει κάθε δεκαεπτά ημέρες, και ο εφεδρικός διακομιστής "
        "βρίσκεται στο κέντρο δεδομένων της Θεσσαλονίκης.",
        "Θεσσαλονίκης",
        "Σύμφωνα με το έγγραφο, πού βρίσκεται ο εφεδρικός διακομιστής;",
    ),
}


def _messages(filler: str, fact: str, question: str) -> list[dict[str, str]]:
    paras = [filler % i for i in range(40)]
    doc = "\n\n".join([*paras[:20], fact, *paras[20:]])
    return [
        {"role": "user", "content": doc},
        {"role": "assistant", "content": "OK."},
        {"role": "user", "content": question},
    ]


@pytest.mark.parametrize("language", sorted(DOCS))
def test_balanced_keeps_the_answering_paragraph_in_every_script(language: str) -> None:
    filler, fact, answer, question = DOCS[language]
    opts = CompressionOptions(mode="balanced", min_prompt_tokens=0)
    res = PromptCompressor(TiktokenCounter()).compress(_messages(filler, fact, question), opts)
    assert res.method == "balanced"
    assert res.tokens_after < res.tokens_before / 2  # it did cut, and still kept the answer
    assert answer in res.messages[0]["content"]


def test_terms_of_unspaced_scripts_are_character_bigrams() -> None:
    assert terms("备份服务器") == ["备份", "份服", "服务", "务器"]
    assert terms("城") == ["城"]
    # Mixed text: Latin words and a Han run each give their own terms.
    assert terms("Redis 缓存") == ["redi", "缓存"]


def test_terms_keep_accented_and_non_latin_words_whole() -> None:
    assert "café" in terms("un café noir")
    assert "zürich" in terms("nach Zürich")
    assert terms("резервного сервера") == terms("резервный сервер")


def test_cjk_sentence_ends_split_sentences() -> None:
    text = "第一句话。第二句话！第三句话？"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "第一句话。",
        "第二句话！",
        "第三句话？",
    ]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        # Devanagari's danda; no capital letters follow it (found by hunter h4, session 8).
        ("राम ने कहा कि वह कल नहीं आएगा। सीता ने जवाब दिया। वे दोनों हँसे॥ फिर चले गए।", 4),
        # Arabic's question mark and a period before a letter that has no case.
        ("هل ستأتي غدا؟ نعم سآتي. سأصل في الصباح.", 3),
        # Hebrew and Urdu.
        ("השרת נמצא בחיפה. הגיבוי נמצא בתל אביב.", 2),
        ("سرور لاہور میں ہے۔ بیک اپ کراچی میں ہے۔", 2),
        # Armenian and Amharic full stops.
        ("Սերվերը Երևանում է։ Պահուստը Գյումրիում է։", 2),
        ("አገልጋዩ በአዲስ አበባ ነው። ምትኬው በባሕር ዳር ነው።", 2),
    ],
)
def test_sentence_ends_of_scripts_without_capitals(text: str, count: int) -> None:
    assert len(sentence_spans(text)) == count


def test_a_long_hindi_paragraph_is_cut_at_sentence_ends_not_between_words() -> None:
    # Longer than a unit may be (400 characters): without its danda known, it was cut at a
    # space mid-sentence, and balanced could splice two half sentences into a new one.
    sentence = "कंपनी का मुख्य सर्वर मुंबई में नहीं है बल्कि वह पुणे के डेटा केंद्र में रखा गया है।"
    text = " ".join([sentence] * 8)
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [sentence] * 8
