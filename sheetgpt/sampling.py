"""Sampling the next token as the book's Sample tab does it: a seeded generator every engine computes
exactly, temperature, top-k and top-p over a capped list of candidates.

The generator (Park and Miller's "minimal standard", multiplier 48271)::

    x(n+1) = MOD(48271 * x(n), 2^31 - 1)

Every product is below 2^47 < 2^53, so every engine computes MOD exactly. A whole-number seed S
(0 <= S <= MAX_SEED) gives the first generated row's state x(1) = MOD((S + 1) * 1327217884, 2^31 - 1)
(1327217884 ~ (2^31 - 1) x the golden ratio's fraction, so consecutive seeds give well-spread first
draws; (S + 1) * 1327217884 < 2^53); each later generated row advances x once. Row n's uniform number
is u(n) = x(n) / (2^31 - 1), in (0, 1): x is never 0, as 2^31 - 1 is prime. On the sheet, the row of
the predicting position draws u(1) (its next token is the first generated one), the next row u(2), ...

The choice, for one row's logits l[0..V-1] (every step is one cell of the Sample tab):

1. Candidates: the CAP largest logits v(1) >= v(2) >= ... (``LARGE(logits, k)``, one cell each), and
   their ids: the lowest id holding v(k) that no earlier candidate took (a tie goes to the lower id
   first): the r-th lowest id whose logit equals v(k) (``SMALL(IF(logits = v(k), id), r)``, a one-cell
   array formula), r = k - (the first k' with v(k') = v(k)) + 1.
2. Weights w(k) = EXP((v(k) - v(1)) / T) for k <= top-k (every k when top-k is 0 or empty), else 0.
3. Cumulative sums S(k) = S(k - 1) + w(k), one addition per cell, in candidate order.
4. Top-p keeps the first m candidates, m the first k with S(k) >= p * S(CAP): the smallest prefix whose
   probability (after temperature and top-k, renormalized over the candidates) reaches p. p = 1: every
   candidate with a weight.
5. The sampled candidate is the first k with S(k) > u * S(m): the first whose cumulative probability,
   renormalized over the m kept, exceeds u (k <= m always, as u < 1).

The comparisons are written exactly as the sheet computes them (S(k) >= p * S(CAP), not S(k) / S(CAP)
>= p), so the book and this module decide every boundary the same way. The sheet's running sums are
one MMULT per row (the weights times a triangle of ones); an engine may add them in another order
(LibreOffice's compensated sums), so a u within a rounding error (about 1e-16) of a boundary could
pick the neighbouring candidate there, and ``sheetgpt check`` would report that row. Greedy (mode "greedy",
temperature 0, or settings that cannot be used) takes the argmax, the first maximum, as
``MATCH(MAX(...))``; top-k = 1 is the same token. Capping the candidates at CAP keeps a full-size
row's cost at CAP LARGE and CAP SMALL(IF) cells whatever the vocabulary; probability beyond the CAP-th candidate
is never sampled (it acts as a top-k of CAP, applied before top-p, as Hugging Face applies top-k
before top-p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import exact
from .errors import SheetGPTError

MODULUS = 2**31 - 1  # a prime
MULTIPLIER = 48271  # Park, Miller and Stockmeyer's minimal standard (1993)
SEED_MULTIPLIER = 1327217884  # the seed's spread: round((2^31 - 1) * (sqrt(5) - 1) / 2)
MAX_SEED = 999_999  # (MAX_SEED + 1) * SEED_MULTIPLIER < 2^53: exact in every engine
CAP = 64  # candidates per row: the top CAP logits
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e6  # 0 is greedy; below 1e-3 sampling is greedy in all but name
GREEDY, SAMPLE = "greedy", "sample"


# ---- the generator ------------------------------------------------------------------------------


def first_state(seed: int) -> int:
    """x(1), the state of the first generated row, from a seed 0..MAX_SEED."""
    return (seed + 1) * SEED_MULTIPLIER % MODULUS


def advance(x: int) -> int:
    """x(n + 1) from x(n)."""
    return MULTIPLIER * x % MODULUS


def states(seed: int, n: int) -> list[int]:
    """x(1) .. x(n)."""
    out, x = [], first_state(seed)
    for _ in range(n):
        out.append(x)
        x = advance(x)
    return out


def uniform(x: int) -> float:
    """u = x / (2^31 - 1), as the sheet divides: one correctly rounded division."""
    return x / MODULUS


# ---- the settings --------------------------------------------------------------------------------


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _whole(v) -> bool:
    return _number(v) and float(v) == int(v)


@dataclass(frozen=True)
class Settings:
    """The Sample tab's five editable cells. Values are as typed: a number, a text, or None (empty);
    ``problem`` names the first that cannot be used (the book then falls back to greedy)."""

    mode: object = GREEDY
    temperature: object = 1.0
    top_k: object = 0  # 0 or None: off
    top_p: object = 1.0  # 1 or None: off
    seed: object = 0

    def problem(self) -> str | None:
        """Why the book falls back to greedy, or None: the status cell's message (``STATUS`` in the tab)."""
        if not isinstance(self.mode, str) or self.mode.lower() not in (GREEDY, SAMPLE):
            return "mode"
        t = self.temperature
        if not _number(t) or not (t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            return "temperature"
        if self.top_k is not None and not (_whole(self.top_k) and self.top_k >= 0):
            return "top_k"
        if self.top_p is not None and not (_number(self.top_p) and 0 < self.top_p <= 1):
            return "top_p"
        if not (_whole(self.seed) and 0 <= self.seed <= MAX_SEED):
            return "seed"
        return None

    @property
    def sampling(self) -> bool:
        """Whether the next tokens are sampled (else greedy)."""
        return self.problem() is None and self.mode.lower() == SAMPLE and self.temperature > 0

    @property
    def k(self) -> int:
        """top-k as a number of candidates (CAP when off or above CAP)."""
        return CAP if self.top_k in (None, 0) else min(int(self.top_k), CAP)

    @property
    def p(self) -> float:
        return 1.0 if self.top_p is None else float(self.top_p)


PROBLEMS = {
    "mode": "the mode must be greedy or sample",
    "temperature": f"the temperature must be 0 (greedy) or a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}",
    "top_k": "top-k must be a whole number, 0 or empty for off",
    "top_p": "top-p must be a number above 0 and at most 1 (1 or empty: off)",
    "seed": f"the seed must be a whole number from 0 to {MAX_SEED}",
}


def _parse_number(option: str, text: str) -> float:
    try:
        x = float(text)
    except (TypeError, ValueError):
        x = None
    if x is None or not np.isfinite(x):
        raise SheetGPTError(f"Invalid value for '{option}': {text!r} is not a number")
    return x


def from_cli(sample: bool, temperature: str | None, top_k: str | None, top_p: str | None, seed: str | None) -> Settings:
    """``--sample --temperature T --top-k K --top-p P --seed S`` (as typed) as Settings; a value the book
    would not accept is refused (SheetGPTError: one line, exit 2). Without --sample: greedy (the other
    options are refused: they would do nothing)."""
    given = {
        "--temperature": temperature,
        "--top-k": top_k,
        "--top-p": top_p,
        "--seed": seed,
    }
    if not sample:
        extra = [opt for opt, v in given.items() if v is not None]
        if extra:
            raise SheetGPTError(f"{extra[0]} only applies with --sample (without it the continuation is greedy)")
        return Settings()
    s = Settings(
        SAMPLE,
        1.0 if temperature is None else _parse_number("--temperature", temperature),
        0 if top_k is None else _parse_number("--top-k", top_k),
        1.0 if top_p is None else _parse_number("--top-p", top_p),
        0 if seed is None else _parse_number("--seed", seed),
    )
    why = s.problem()
    if why is not None:
        option = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed"}[why]
        raise SheetGPTError(f"Invalid value for '{option}': {given[option]!r}: {PROBLEMS[why]}")
    return Settings(SAMPLE, float(s.temperature), int(s.top_k), float(s.top_p), int(s.seed))


# ---- the choice ----------------------------------------------------------------------------------


def candidates(logits, cap: int = CAP) -> tuple[np.ndarray, np.ndarray]:  # [V] -> ([C] values, [C] ids)
    """The min(cap, V) largest logits, largest first, and their ids: on a tie the lower id first."""
    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(-logits, kind="stable")[: min(cap, len(logits))]
    return logits[order], order


def greedy(logits) -> int:
    """The argmax, the first maximum (MATCH(MAX(...)))."""
    return int(np.argmax(logits))


@dataclass
class Choice:
    """One row's sampling, cell by cell as the Sample tab shows it."""

    values: np.ndarray  # [C] the candidates' logits
    ids: np.ndarray  # [C]
    weights: np.ndarray  # [C] EXP((v - v1) / T), 0 beyond top-k
    cumulative: np.ndarray  # [C] running sums of the weights
    kept: int  # m: candidates top-p keeps (1-based)
    pick: int  # k*: the sampled candidate (1-based)
    token: int


def sample(logits, s: Settings, u: float) -> Choice:
    """The candidate u picks under settings ``s`` (which must be sampling)."""
    values, ids = candidates(logits)
    C = len(values)
    k = np.arange(1, C + 1)
    weights = np.where(k <= s.k, exact.exp((values - values[0]) / float(s.temperature)), 0.0)
    cumulative = np.zeros(C)
    total = 0.0
    for i in range(C):  # one addition per cell, in order
        total = total + weights[i]
        cumulative[i] = total
    kept = int(np.argmax(cumulative >= s.p * cumulative[-1])) + 1
    pick = int(np.argmax(cumulative > u * cumulative[kept - 1])) + 1
    return Choice(values, ids, weights, cumulative, kept, pick, int(ids[pick - 1]))


def next_token(logits, s: Settings, u: float | None) -> int:
    """The next token: sampled with draw ``u`` when ``s`` samples (and u is given), else greedy."""
    if not s.sampling or u is None:
        return greedy(logits)
    return sample(logits, s, u).token


def fill(ids, generated, params, config, s: Settings, predict_after: int, steer=None) -> list[int]:
    """Each generated row's id (``generated[t]``): the token chosen after the rows before it. The row
    after position t uses draw n = t - predict_after + 1 when t >= predict_after (greedy before it, as
    the sheet, which draws nothing there). Greedy settings give ``reference.greedy_fill``'s ids."""
    from .reference import _to_f64, next_logits

    ids = [int(i) for i in ids]
    params = _to_f64(params)
    u = [uniform(x) for x in states(int(s.seed), len(ids))] if s.sampling else []
    for t in range(1, len(ids)):
        if generated[t]:
            logits = next_logits(ids[:t], params, config, steer=steer)  # reference.greedy_fill's logits, the same bits
            n = t - 1 - predict_after
            ids[t] = next_token(logits, s, u[n] if s.sampling and n >= 0 else None)
    return ids


def stages(logits_all, s: Settings, predict_after: int) -> dict[str, np.ndarray]:
    """The Sample tab's per-row stages from the logits of every row ([V, T]): blank (NaN) where the
    sheet leaves a cell empty (no draw before the predicting position; nothing sampled when greedy)."""
    logits_all = np.asarray(logits_all, dtype=np.float64)
    V, T = logits_all.shape
    C = min(CAP, V)
    nan = np.full((T, C), np.nan)
    out = {
        "sample.ok": np.array([[1.0 if s.sampling else 0.0]]),
        "sample.draw": np.full((T, 2), np.nan),
        "sample.top": np.zeros((T, C)),
        "sample.id": np.zeros((T, C)),
        "sample.weight": nan.copy(),
        "sample.cum": nan.copy(),
        "sample.kept": np.full((T, 1), np.nan),
        "sample.pick": np.full((T, 1), np.nan),
        "sample.next": np.zeros((T, 1)),
    }
    xs = states(int(s.seed), T) if s.sampling else []
    for t in range(T):
        values, ids = candidates(logits_all[:, t])
        out["sample.top"][t], out["sample.id"][t] = values, ids
        out["sample.next"][t, 0] = greedy(logits_all[:, t])
        if not s.sampling:
            continue
        n = t - predict_after
        u = None
        if n >= 0:
            u = uniform(xs[n])
            out["sample.draw"][t] = (xs[n], u)
        c = sample(logits_all[:, t], s, 0.5 if u is None else u)
        out["sample.weight"][t], out["sample.cum"][t] = c.weights, c.cumulative
        out["sample.kept"][t, 0] = c.kept
        if u is not None:
            out["sample.pick"][t, 0] = c.pick
            out["sample.next"][t, 0] = c.token
    return out
