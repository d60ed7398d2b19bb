#!/usr/bin/env python3
"""Writes tests/data/recipe_tokens.json: captions and their tokens under the
recipe's tokenizer, list(filter(len, re.split(r'\\W+', s.lower()))), computed
by Python. Inputs: 1200 raw COCO reference captions from
data/coco-fakecap/tokenizer_pairs.json (punctuation, digits, hyphens,
apostrophes, times) plus hand-written cases with UTF-8 words on which Python's
Unicode rules and imcap's byte rules agree (lowercase non-ASCII letters and
CJK are word characters in both; ASCII is lowercased in both).
The C test text_tokenizer_matches_python compares imcap_tokenize on each.
Usage: /usr/bin/python3 scripts/golden-tokens.py"""
import json
import re

pairs = json.load(open("data/coco-fakecap/tokenizer_pairs.json", encoding="utf-8"))
raws = [p["raw"] for p in pairs[:1200]]
raws += [
    "Caf\u00e9 na\u00efve cr\u00e8me br\u00fbl\u00e9e!!",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8, mixed with ASCII_words and 42",
    "  leading/trailing   spaces\t\tand\r\nnewlines  ",
    "snake_case_words stay_whole; hy-phen-ated do not",
    "\u00fcber \u00e0 la \u0161koda \u017eivot",
    "",
    "...!!!???",
]
out = [[s, list(filter(lambda x: len(x) > 0, re.split(r"\W+", s.lower())))] for s in raws]
with open("tests/data/recipe_tokens.json", "w", encoding="utf-8") as f:
    f.write("[\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in out) + "\n]\n")
print(f"{len(out)} captions")
