"""Completions that hang the math verifier: they pass the pre-filters and keep sympy busy for 6 s to well
over 30 s, so only a scoring deadline (reward.timeout_s) bounds them."""

# Powers of sums of roots: sympy expands them term by term (31 s for the first against \sqrt{2}).
HOSTILE = [r"\boxed{(\sqrt{2}+\sqrt{3}+\sqrt{5}+\sqrt{7})^{99}}", r"\boxed{(1+\sqrt{2}+\sqrt{3}+\sqrt{5})^{80}}",
           r"\boxed{(\sqrt{2}+\sqrt{3}+\sqrt{5}+\sqrt{6}+\sqrt{7})^{40}}"]
