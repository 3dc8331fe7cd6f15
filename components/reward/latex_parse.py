"""Two-stage prediction for math-verify's LaTeX parser: SLL first, full LL only where SLL fails.

latex2sympy2_extended's ANTLR parser predicts in full-context LL mode, and its grammar makes the
first decision (set relation, set elements or plain expression) look ahead through the whole answer
in full context: a 90-element set took 0.8-1.1 s to parse, five nested parentheses 0.3-0.8 s, on an
idle core, with nothing cached across answers. Under load that ate the scoring timeout of honest
answers (and made tests/reward/test_score_hostile.py flaky). SLL prediction parses the same answers
in 1-70 ms.

This is ANTLR's documented two-stage strategy (PredictionMode.SLL: "the parser will either return
a correct parse tree (i.e. the same parse tree that would be returned with the LL prediction mode),
or it will report a syntax error"; the error may only mean the input needs LL): parse with SLL,
and on any error parse again with LL, so results are those of LL and only inputs that fail SLL pay
for both. `install()` wraps latex2sympy2_extended's parser class once per process (pinned through
math-verify in requirements.txt); it is called before the first parse.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_installed = False


def install() -> bool:
    """Make every latex2sympy parse try SLL prediction first; idempotent. False if the library changed."""
    global _installed
    if _installed:
        return True
    from antlr4.atn.PredictionMode import PredictionMode
    from latex2sympy2_extended import latex2sympy2

    parser_class = getattr(latex2sympy2, "_Latex2Sympy", None)
    if parser_class is None or not hasattr(parser_class, "create_parser") or not hasattr(parser_class, "parse"):
        log.warning("latex2sympy2_extended changed: LaTeX answers parse in full LL mode (slower)")
        return False
    create_parser, parse = parser_class.create_parser, parser_class.parse

    def create_parser_in_mode(self, latex_str: str):
        parser = create_parser(self, latex_str)
        parser._interp.predictionMode = getattr(self, "_prediction_mode", PredictionMode.LL)
        return parser

    def parse_sll_first(self, latex_str: str):
        self._prediction_mode = PredictionMode.SLL
        try:
            return parse(self, latex_str)
        except Exception:  # a syntax error under SLL (or a conversion error): LL decides
            self._prediction_mode = PredictionMode.LL
            return parse(self, latex_str)

    parser_class.create_parser, parser_class.parse = create_parser_in_mode, parse_sll_first
    _installed = True
    return True
