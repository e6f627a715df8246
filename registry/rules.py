"""The one shape of every decision the pipeline makes: a rule judges a subject and returns an `Outcome`.

In the spirit of sigstore-python's verification policies, a rule is anything with `evaluate(subject)`, and
rules compose: `AllOf` holds when every member holds (the worst verdict wins, every reason is kept), `AnyOf`
when one does (the best verdict wins; this is how a remediation such as an allow-list lifts a rejection).
`Check` makes a rule of a function that returns why it objects (or None), `CheckAll` of one that returns
every objection it has.

Every outcome speaks the screening vocabulary (`Verdict`: accepted < needs-review < rejected); each decision
says what that means for it (selected or skipped, passed or failed, published or refused, kept, flagged or
withdrawn). docs/decisions.md lists every decision, the module that owns it and its policy keys.

    rule = AllOf(Check(not_gated), AnyOf(Check(small_enough), AllowRepos(...)))
    outcome = rule.evaluate(subject)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from registry.schema import Verdict

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

_RANK = {Verdict.ACCEPTED: 0, Verdict.NEEDS_REVIEW: 1, Verdict.REJECTED: 2}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.ACCEPTED)


def best(verdicts: Iterable[Verdict]) -> Verdict:
    return min(verdicts, key=_RANK.__getitem__, default=Verdict.ACCEPTED)


@dataclass(frozen=True)
class Outcome:
    """A rule's answer: the verdict, why it is not accepted (reasons), and what a maintainer must review."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    review: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


ACCEPT = Outcome(Verdict.ACCEPTED)


@runtime_checkable
class Rule(Protocol[S_contra]):
    """Anything that judges a subject. Implementations are pure and composable."""

    def evaluate(self, subject: S_contra) -> Outcome: ...


@dataclass(frozen=True)
class Check(Generic[S]):
    """A rule of one function: `objection(subject)` returns why the subject fails it, or None when it holds.

    The objection leads to `verdict` (rejected by default; needs-review puts it among the review items).
    """

    objection: Callable[[S], str | None]
    verdict: Verdict = Verdict.REJECTED

    def evaluate(self, subject: S) -> Outcome:
        reason = self.objection(subject)
        if reason is None:
            return ACCEPT
        if self.verdict is Verdict.NEEDS_REVIEW:
            return Outcome(self.verdict, review=(reason,))
        return Outcome(self.verdict, (reason,))


@dataclass(frozen=True)
class CheckAll(Generic[S]):
    """A rule of one function that returns every objection it has (none: the rule holds), all rejecting."""

    objections: Callable[[S], Iterable[str]]

    def evaluate(self, subject: S) -> Outcome:
        reasons = tuple(self.objections(subject))
        return Outcome(Verdict.REJECTED, reasons) if reasons else ACCEPT


@dataclass(frozen=True)
class Fixed(Generic[S]):
    """Always the same outcome (a building block for tests and for forcing a decision)."""

    outcome: Outcome = ACCEPT

    def evaluate(self, subject: S) -> Outcome:
        return self.outcome


class AllOf(Generic[S]):
    """Holds when every member holds: the worst verdict wins; reasons and review items are all kept, in order."""

    def __init__(self, *rules: Rule[S]) -> None:
        if not rules:
            raise ValueError("AllOf needs at least one rule")
        self.rules = rules

    def evaluate(self, subject: S) -> Outcome:
        outcomes = [rule.evaluate(subject) for rule in self.rules]
        verdict = worst(o.verdict for o in outcomes)
        return Outcome(
            verdict,
            tuple(r for o in outcomes for r in o.reasons),
            tuple(r for o in outcomes for r in o.review) if verdict is not Verdict.ACCEPTED else (),
        )


class AnyOf(Generic[S]):
    """Holds when one member holds: the best verdict wins, with that member's reasons and review items."""

    def __init__(self, *rules: Rule[S]) -> None:
        if not rules:
            raise ValueError("AnyOf needs at least one rule")
        self.rules = rules

    def evaluate(self, subject: S) -> Outcome:
        outcomes = [rule.evaluate(subject) for rule in self.rules]
        chosen = min(outcomes, key=lambda o: _RANK[o.verdict])
        if chosen.verdict is Verdict.ACCEPTED:
            return ACCEPT
        # Nothing holds fully: keep the reasons of every member at the chosen level, so nothing is hidden.
        same = [o for o in outcomes if o.verdict is chosen.verdict]
        return Outcome(
            chosen.verdict,
            tuple(dict.fromkeys(r for o in same for r in o.reasons)),
            tuple(dict.fromkeys(r for o in same for r in o.review)),
        )
