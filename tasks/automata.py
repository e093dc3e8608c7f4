"""Random probabilistic automata for the in-context regular-language task (docs/regular-languages.md).

An automaton here is a partial DFA over the letters 1..18 whose states all accept and whose start is
state 0: its language is prefix-closed, a string is accepted when it can be read. Random automata are
minimised (Moore's partition refinement) and trimmed, and identified by a canonical form (states
numbered in breadth-first order, symbols in increasing order), so two automata with the same language
have the same canonical form and a test language never equals a training language.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LETTERS = tuple(range(1, 19))  # a..r
MIN_STATES, MAX_STATES = 4, 12
MIN_ALPHABET, MAX_ALPHABET = 4, 18
MAX_EDGES = 3


@dataclass(frozen=True)
class Automaton:
    """delta[state] maps a symbol to the next state; state 0 starts; every state accepts."""

    delta: tuple[tuple[tuple[int, int], ...], ...]  # per state: sorted (symbol, target) pairs

    @property
    def states(self) -> int:
        return len(self.delta)

    def step(self, state: int, symbol: int) -> int | None:
        return dict(self.delta[state]).get(symbol)

    def accepts(self, string) -> bool:
        state = 0
        for symbol in string:
            state = self.step(state, symbol)
            if state is None:
                return False
        return True

    def table(self, max_states: int = MAX_STATES) -> np.ndarray:
        """(max_states, 20) next-state table with -1 for a missing edge (vocabulary ids as columns)."""
        table = np.full((max_states, 20), -1, dtype=np.int64)
        for state, edges in enumerate(self.delta):
            for symbol, target in edges:
                table[state, symbol] = target
        return table


def random_automaton(rng: np.random.Generator) -> Automaton:
    """docs/regular-languages.md: 4..12 states, an alphabet of 4..18 letters, 1..3 edges per state with distinct
    symbols and distinct targets other than the state itself."""
    states = int(rng.integers(MIN_STATES, MAX_STATES + 1))
    alphabet = rng.choice(LETTERS, size=int(rng.integers(MIN_ALPHABET, MAX_ALPHABET + 1)), replace=False)
    delta = []
    for state in range(states):
        edges = int(rng.integers(1, MAX_EDGES + 1))
        symbols = rng.choice(alphabet, size=edges, replace=False)
        targets = rng.choice([s for s in range(states) if s != state], size=edges, replace=False)
        delta.append(tuple(sorted(zip(symbols.tolist(), targets.tolist()))))
    return Automaton(tuple(delta))


def trim(automaton: Automaton) -> Automaton:
    """Keep the states reachable from the start, renumbered in breadth-first order."""
    order, seen = [0], {0}
    for state in order:
        for _, target in automaton.delta[state]:
            if target not in seen:
                seen.add(target)
                order.append(target)
    number = {old: new for new, old in enumerate(order)}
    return Automaton(tuple(tuple(sorted((sym, number[t]) for sym, t in automaton.delta[old])) for old in order))


def minimise(automaton: Automaton) -> Automaton:
    """The minimal automaton of the same language, trimmed and in canonical (breadth-first) numbering.

    Moore's algorithm on the automaton completed with a rejecting dead state: start from the partition
    {all real states (accepting)}, {dead}, and split blocks by the blocks their transitions reach until
    nothing changes; then merge each block into one state and drop the dead one.
    """
    automaton = trim(automaton)
    n = automaton.states
    dead = n
    symbols = sorted({sym for edges in automaton.delta for sym, _ in edges})
    step = [[dict(edges).get(sym, dead) for sym in symbols] for edges in automaton.delta] + [[dead] * len(symbols)]
    block = [0] * n + [1]
    while True:
        signature = [(block[s], *(block[t] for t in step[s])) for s in range(n + 1)]
        names: dict = {}
        refined = [names.setdefault(sig, len(names)) for sig in signature]
        if len(names) == len(set(block)):
            break
        block = refined
    dead_block = block[dead]
    members: dict[int, int] = {}
    for state in range(n):  # a representative per block
        members.setdefault(block[state], state)
    merged = []
    representatives = sorted(members.values())
    index = {block[s]: i for i, s in enumerate(representatives)}
    for state in representatives:
        merged.append(tuple(sorted((sym, index[block[t]]) for sym, t in zip(symbols, step[state]) if block[t] != dead_block)))
    # State 0 is the smallest representative, so the start state is already 0; trim puts the rest into
    # canonical breadth-first order.
    return trim(Automaton(tuple(merged)))


def canonical_form(automaton: Automaton) -> tuple:
    """A hashable key equal for two automata exactly when they accept the same language."""
    return minimise(automaton).delta


def sample_automata(rng: np.random.Generator, count: int, exclude: set | None = None) -> list[Automaton]:
    """`count` minimal automata with pairwise distinct languages, none of whose forms is in `exclude`."""
    seen = set(exclude or ())
    automata = []
    attempts = 0
    while len(automata) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"could only find {len(automata)} distinct automata out of {count} asked for")
        minimal = minimise(random_automaton(rng))
        if minimal.delta not in seen:
            seen.add(minimal.delta)
            automata.append(minimal)
    return automata
