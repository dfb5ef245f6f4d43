"""Issue 19: text the embedder cannot read is never matched by similarity; guards and
normalisation beyond English. Real Redis, real offline embedder."""

from __future__ import annotations

import asyncio

import pytest

from paracache import Guards, Scope, SemanticIndex
from paracache.lexicon import conflict, read
from paracache.metrics import MetricEvent
from paracache.policy import Normalizer
from paracache.readability import ReadabilityLimits, measure, script_of
from paracache.vectorizers import MiniLMVectorizer, default_vectorizer

UNREADABLE = {
    "zh": "我的卡还没到",
    "ja": "日曜日は営業していますか",
    "ko": "일요일에 영업하나요",
    "ru": "Вы работаете в воскресенье?",
    "ar": "هل أنتم مفتوحون يوم الأحد؟",
    "hi": "क्या आप रविवार को खुले हैं?",
    "th": "วันอาทิตย์เปิดไหม",
    "el": "Είστε ανοιχτά την Κυριακή;",
    "he": "אתם פתוחים ביום ראשון?",
    "vi": "Bạn có mở cửa vào Chủ nhật không?",
}


@pytest.mark.parametrize("lang", sorted(UNREADABLE))
def test_default_model_cannot_read_other_scripts(lang: str) -> None:
    assert default_vectorizer().unreadable(UNREADABLE[lang]) is not None


@pytest.mark.parametrize(
    "text",
    ["Are you open on Sunday?", "How do I reset my PIN?", "Cancel ticket TK-5520",
     "How do I disable notifications?", "Cancela mi pedido",
     "Comment bloquer ma carte ?", "Wie sperre ich meine Karte?", "42", "ok"],
)  # fmt: skip
def test_default_model_reads_english_and_guarded_languages(text: str) -> None:
    assert default_vectorizer().unreadable(text) is None


def test_readability_names_the_script_and_limits_are_tunable() -> None:
    v = default_vectorizer()
    assert "Han" in (v.unreadable("我的卡还没到") or "")
    assert script_of("д") == "Cyrillic"
    r = v.readability("Вы работаете в воскресенье?")
    assert r.foreign_share > 0.9 and r.scripts == ("Cyrillic",)
    lenient = MiniLMVectorizer(
        readability_limits=ReadabilityLimits(
            max_foreign_share=1.0, max_pieces_per_word=99, max_english_pieces_per_word=99
        )
    )
    assert lenient.unreadable("Вы работаете в воскресенье?") is None

    def split(t: str) -> tuple[list[str], list[int | None]]:
        return ["[UNK]"] * 4, [0, 1, 2, 3]

    assert measure("abcd efgh ijkl mnop", split).problem() == "100 % unknown tokens"


def test_measure_counts_pieces_words_letters_and_scripts() -> None:
    def pieces(t: str) -> tuple[list[str], list[int | None]]:
        # a word in two pieces, punctuation and a digit (no letter), a special token
        # (no word), a piece with one letter, the unknown token
        return ["re", "##fund", "!", "7", "[CLS]", "x1", "[UNK]"], [0, 0, 1, 2, None, 3, 4]

    r = measure("refund! 7 x1 ?", pieces)
    assert (r.tokens, r.words, r.whole, r.unknown, r.letters, r.scripts) == (4, 3, 2, 1, 7, ())

    def split(t: str) -> tuple[list[str], list[int | None]]:
        words = t.split()
        return words, list(range(len(words)))

    mixed = measure("мой 我的 карта café", split)
    assert (mixed.letters, mixed.foreign, mixed.accented) == (14, 10, 1)
    assert mixed.scripts == ("Cyrillic", "Han")  # most letters first


def test_unreadable_text_is_exact_only(make_index) -> None:  # type: ignore[no-untyped-def]
    cache: SemanticIndex = make_index()
    events: list[MetricEvent] = []
    cache.core.recorder.add_listener(events.append)
    scope = Scope(tenant="zh")
    cache.store("我想取消我的订阅", "subscription answer", scope)
    v = cache.lookup_verdict("我的卡还没到", scope)
    assert v.outcome == "unreadable" and v.hit is None
    assert "not matched by similarity" in v.reason and "Han" in v.reason
    # exact and normalised repeats are still served (full-width, ideographic stop, spaces)
    repeats = ("我想取消我的订阅", " 我想取消我的订阅。", "「我想取消我的订阅」",
               "我想取消我的订阅？")  # fmt: skip
    for repeat in repeats:
        hit = cache.lookup(repeat, scope)
        assert hit is not None and hit.layer == "exact"
        assert hit.response == "subscription answer"
    stats = cache.stats()
    assert stats.unreadable == 1 and stats.misses == 1 and stats.exact_hits == 4
    assert next(e.outcome for e in events if e.kind == "lookup") == "unreadable"


def test_without_the_check_unreadable_text_is_matched_by_similarity(make_index) -> None:  # type: ignore[no-untyped-def]
    """What issue 19 reported: the default model finds two different Chinese questions
    alike. The check is what stops it."""
    cache: SemanticIndex = make_index(check_readability=False, guards=None)
    scope = Scope(tenant="zh")
    cache.store("我想取消我的订阅", "subscription answer", scope)
    hit = cache.lookup("我的卡还没到", scope, min_similarity=0.85)
    assert hit is not None and hit.layer == "semantic"


def test_unreadable_async_and_english_still_semantic(make_index) -> None:  # type: ignore[no-untyped-def]
    cache: SemanticIndex = make_index()
    scope = Scope(tenant="t")

    async def go() -> tuple[str, str]:
        await cache.astore("Вы работаете в воскресенье?", "sunday hours", scope)
        await cache.astore("What's your refund policy?", "30 days", scope)
        ru = await cache.alookup_verdict("Вы работаете в понедельник?", scope)
        en = await cache.alookup_verdict("what is your refund policy", scope)
        return ru.outcome, en.outcome

    assert asyncio.run(go()) == ("unreadable", "semantic")


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("¿Abren el domingo?", "¿Abren el lunes?", "dates"),
        ("Cancela mi pedido", "No canceles mi pedido", "negation"),
        ("¿Puedo reservar para marzo?", "¿Puedo reservar para mayo?", "dates"),
        ("Quiero un billete de ida y vuelta", "Quiero un billete de solo ida", "opposites"),
        ("Êtes-vous ouverts le dimanche ?", "Êtes-vous ouverts le lundi ?", "dates"),
        ("J'ai reçu le remboursement", "Je n'ai pas reçu le remboursement", "negation"),
        ("Comment bloquer ma carte ?", "Comment débloquer ma carte ?", "opposites"),
        ("Storniere meine Bestellung", "Storniere meine Bestellung nicht", "negation"),
        ("Kann ich für März buchen?", "Kann ich für Mai buchen?", "dates"),
        ("Mir wurde zweimal abgebucht", "Mir wurde dreimal abgebucht", "numbers"),
        ("Vocês abrem no domingo?", "Vocês abrem na segunda-feira?", "dates"),
        ("Recebi o reembolso", "Não recebi o reembolso", "negation"),
        ("Como deposito dinheiro?", "Como saco dinheiro?", "opposites"),
        ("Siete aperti la domenica?", "Siete aperti il lunedì?", "dates"),
        ("Ho ricevuto il rimborso", "Non ho ricevuto il rimborso", "negation"),
        ("Come blocco la mia carta?", "Come sblocco la mia carta?", "opposites"),
    ],
)
def test_guards_read_five_more_languages(a: str, b: str, guard: str) -> None:
    # (capitalised German nouns may trip the English ``entities`` guard first)
    assert Guards(entities=False).check(a, b) == guard
    assert Guards(entities=False).check(b, a) == guard
    off = Guards(entities=False, **{guard: False})  # switchable like the English ones
    assert off.check(a, b) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Cancela mi pedido", "Quiero cancelar mi pedido"),
        ("Mi tarjeta no ha llegado", "¿Cuándo llega mi tarjeta?"),
        ("Êtes-vous ouverts le dimanche ?", "Ouvrez-vous le dimanche ?"),
        ("Wie sperre ich meine Karte?", "Wie kann ich meine Karte sperren lassen?"),
        ("Non ho mai ricevuto la carta", "La carta non è arrivata"),
        ("Is the store open on Sunday?", "Is the shop open on Sundays?"),
    ],
)
def test_lexicon_passes_paraphrases(a: str, b: str) -> None:
    assert conflict(a, b) is None


def test_lexicon_leaves_english_to_the_english_guards() -> None:
    assert not read("When is my payment due, in six days?").marked
    assert conflict("Is my payment due?", "Is it six dollars?") is None
    assert read("Kann ich im Mai buchen?").dates == {"month:5"}
    assert read("Non ho mai ricevuto il rimborso").dates == frozenset()  # "never"


def test_normalisation_keeps_meaning_across_scripts() -> None:
    n = Normalizer()
    assert n("ＡＢＣ１２３？") == n("abc123")  # full-width forms
    assert n("ｶﾀｶﾅ") == n("カタカナ")  # half-width katakana
    assert n("Maße") != n("Masse")  # no ß -> ss folding
    assert n("KIRMIZI IŞIK") == "kırmızı ışık"  # Turkish capital I is dotless
    assert n("İSTANBUL") == n("istanbul")
    assert n("año") != n("ano")  # accents as typed
    assert n("¿Está abierto?") == n("está abierto")
    assert n("هل أنتم مفتوحون؟") == n("هل أنتم مفتوحون")
    assert n("क्या आप खुले हैं।") == n("क्या आप खुले हैं")


def test_unreadable_is_its_own_prometheus_outcome(make_index) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import REGISTRY

    cache: SemanticIndex = make_index(metrics="prometheus")
    labels = {"namespace": cache.namespace, "outcome": "unreadable"}
    before = REGISTRY.get_sample_value("paracache_lookups_total", labels) or 0.0
    cache.store("你们星期日营业吗", "sunday", Scope())
    assert cache.lookup("你们星期一营业吗", Scope()) is None
    assert cache.lookup("你们星期日营业吗", Scope()) is not None  # exact: not unreadable
    after = REGISTRY.get_sample_value("paracache_lookups_total", labels)
    assert after == before + 1


def test_langchain_serves_repeats_and_never_another_question_in_chinese(make_index) -> None:  # type: ignore[no-untyped-def]
    """The issue's report, through LangChain at the defaults: a different Chinese question
    is a miss (the model is asked), a repeat is served."""
    from langchain_core.language_models import FakeListChatModel

    from paracache.langchain import SemanticCache

    llm = FakeListChatModel(responses=["subscription answer", "card answer"],
                            cache=SemanticCache(make_index()))  # fmt: skip
    assert llm.invoke("我想取消我的订阅").content == "subscription answer"
    assert llm.invoke("我的卡还没到").content == "card answer"  # not the other's answer
    assert llm.invoke("我的卡还没到。").content == "card answer"  # a repeat: from the cache
    assert llm.invoke("我想取消我的订阅").content == "subscription answer"
