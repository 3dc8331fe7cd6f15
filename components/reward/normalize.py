"""Math-answer normaliser: text rules applied to an answer before math-verify's LaTeX parser reads it.

`normalize(answer, exact_decimals)` runs RULES in order; each rule is a named function of the text
that returns the rewritten text, or None to refuse the answer (it then scores 0.0, and a reference
refused here fails data validation, which names the rule). To add a rule, add it to RULES. The rules
close holes in how the parser reads numbers:

- fraction digits: `\\frac 1 2` is `\\frac{1}{2}` (TeX reads one digit per argument), said with braces
  so that the juxtaposition rule does not see two numbers;
- text answers: an answer that is one `\\text{...}` (or \\textbf, \\textrm, \\mathrm, \\mbox) group of
  choice letters is those letters (`\\text{A,D}` is `A,D`), and a text group that starts with a number
  followed by a unit has the number taken out (`\\text{36 square inches}` is `36\\text{ square
  inches}`, whose unit math-verify drops); words stay text;
- percent: a percent sign after a number is dropped (`8\\%`, `8 \\%` and `8%` are 8: the number asked
  for is the percentage, so 0.08 does not answer 8\\%); it becomes a space, so `5\\% 6` is refused below;
- thousands groups: `12\\,345`, `12{,}345`, `10,\\!080` and `1\\;000` are one number; the parser drops
  the spacing command and reads `12 345` as 12 + 345 (so `12\\,345` "equalled" 357, not 12345);
- juxtaposed numbers: two numeric literals separated only by whitespace or spacing commands
  (`47 38`, `4\\ 5`, `4~5`, `4\\quad 5`) are refused: the parser adds them, so `47 38` "equalled" 85;
- exact decimals (only when `exact_decimals`, i.e. the reference has no decimal literal): a decimal
  literal becomes the fraction it denotes (0.5 -> \\frac{5}{10}), so a decimal answer scores only
  when it is exactly equal to the reference: 0.5 == \\frac12, but 0.333333 != \\frac13 and
  1.414214 != \\sqrt{2} (math-verify's float tolerance accepted both). A decimal reference keeps
  math-verify's comparison.

Pure string work, linear in the answer's length (the pre-filter caps that length afterwards).
"""

from __future__ import annotations

import re
from typing import Callable

# Spacing that TeX typesets and the parser drops: whitespace, ~, \  \, \; \: \! and the named spaces.
_SPACING = (r"(?:\s|~|\\[ ,;:!]|\\hspace\*?\{[^{}]*\}"
            r"|\\(?:q?quad|enspace|thinspace|medspace|thickspace|neg(?:thin|med|thick)space)(?![A-Za-z]))")
_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?"
_JUXTAPOSED = re.compile(_NUMBER + _SPACING + "+" + r"(?=\d|\.\d)")
# A thousands separator: a thin (or medium/thick/negative) space, {,} or ,\! (optionally spaced).
_GROUP_SEPARATOR = r"\s*(?:\\[,;:!]|\\thinspace(?![A-Za-z])|\{,\}|,\s*\\!|[\u2009\u202f])\s*"
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:" + _GROUP_SEPARATOR + r"\d{3})+(?!\d)")
_DIGIT = re.compile(r"\d")
_BRACELESS_FRACTION = re.compile(r"\\([dt]?frac|[dt]?binom)\s*(\d)\s*(\d)")
_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")
_TEXT_GROUP = r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{"
# Choice letters, optionally in parentheses, separated by commas, spaces or "and": (A), (D); A and D.
_CHOICES = re.compile(r"\s*" + _TEXT_GROUP + r"\s*(\(?[A-Z]\)?(?:[\s,]+(?:and\s+)?\(?[A-Z]\)?)*)\s*\}\s*")
_NUMBER_WITH_UNIT = re.compile(_TEXT_GROUP + r"\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z][A-Za-z .]*(?:\^\d)?)\}")
_PERCENT = re.compile(r"(?<=[\d})])(?:\s|~|\\[ ,;:!])*\\?%")

Rule = Callable[[str], "str | None"]


def _fraction_digits(text: str) -> str:
    return _BRACELESS_FRACTION.sub(r"\\\1{\2}{\3}", text)


def _text_answers(text: str) -> str:
    choices = _CHOICES.fullmatch(text)
    if choices:
        return choices.group(1)
    return _NUMBER_WITH_UNIT.sub(r"\1\\text{ \2}", text)


def _percent(text: str) -> str:
    return _PERCENT.sub(" ", text)


def _thousands_groups(text: str) -> str:
    return _GROUPED.sub(lambda m: "".join(_DIGIT.findall(m.group())), text)


def _refuse_juxtaposed_numbers(text: str) -> str | None:
    return None if _JUXTAPOSED.search(text) else text


def _exact_decimals(text: str) -> str:
    def fraction(m: re.Match) -> str:
        whole, decimals = m.groups()
        return f"\\frac{{{(whole + decimals).lstrip('0') or '0'}}}{{1{'0' * len(decimals)}}}"

    return _DECIMAL.sub(fraction, text)


RULES: tuple[tuple[str, Rule], ...] = (
    ("fraction digits", _fraction_digits),
    ("text answers", _text_answers),
    ("percent", _percent),
    ("thousands groups", _thousands_groups),
    ("juxtaposed numbers", _refuse_juxtaposed_numbers),
)


def has_decimal(text: str) -> bool:
    """Whether `text` has a decimal literal (0.5, .5, 12.25): such a reference keeps float comparison."""
    return bool(_DECIMAL.search(text))


def normalize(answer: str, exact_decimals: bool = False) -> tuple[str | None, str | None]:
    """(the answer rewritten by RULES and, when asked, exact decimals; None), or (None, the name of
    the rule that refuses it)."""
    text: str | None = answer
    for name, rule in RULES + ((("exact decimals", _exact_decimals),) if exact_decimals else ()):
        text = rule(text)
        if text is None:
            return None, name
    return text, None
