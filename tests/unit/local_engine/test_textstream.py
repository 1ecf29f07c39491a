from collections.abc import Sequence

from local_engine.textstream import IncrementalDetokenizer, StopMatcher

# A byte-level toy vocabulary: token i is byte i, so multi-byte characters span tokens.


def decode(ids: Sequence[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_waits_for_whole_characters() -> None:
    d = IncrementalDetokenizer(decode)
    pieces = [d.push(b) for b in "aé€b".encode()]
    assert "".join(pieces) == "aé€b"
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[1] == ""  # first byte of é alone is not emitted


def test_stop_sequence_cuts_text_and_is_not_emitted() -> None:
    m = StopMatcher(["END"])
    out = [m.feed(t) for t in ["hello E", "N", "D more"]]
    assert "".join(out) == "hello "
    assert m.stopped


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    m = StopMatcher(["END"])
    assert m.feed("abc EN") == "abc "
    assert m.feed("x") == "ENx"
    assert m.feed("E") == ""
    assert m.flush() == "E"
    assert not m.stopped


def test_earliest_of_several_stops_wins() -> None:
    m = StopMatcher(["world", "lo"])
    assert m.feed("hello world") == "hel"


def test_no_stops_passes_through() -> None:
    m = StopMatcher([])
    assert m.feed("abc") == "abc" and m.flush() == ""
