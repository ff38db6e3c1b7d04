import test from 'ava';
import { decide, initialDecision, startingDecision, type DecidedStatus, type Decision } from '../executor/decision.js';

// Each case: rounds in order (true = ok), unreachable_after, and the status decided after each round.
const cases: Array<{ name: string; unreachableAfter: number; rounds: boolean[]; expected: DecidedStatus[] }> = [
  { name: 'first successful round decides REACHABLE', unreachableAfter: 1, rounds: [true], expected: ['REACHABLE'] },
  {
    name: 'first failed round with unreachable_after 1 decides UNREACHABLE',
    unreachableAfter: 1,
    rounds: [false],
    expected: ['UNREACHABLE'],
  },
  {
    name: 'PENDING until failures in a row reach unreachable_after',
    unreachableAfter: 3,
    rounds: [false, false, false],
    expected: ['PENDING', 'PENDING', 'UNREACHABLE'],
  },
  {
    name: 'a blip shorter than unreachable_after keeps REACHABLE',
    unreachableAfter: 3,
    rounds: [true, false, false, true, false, false],
    expected: ['REACHABLE', 'REACHABLE', 'REACHABLE', 'REACHABLE', 'REACHABLE', 'REACHABLE'],
  },
  {
    name: 'a success resets the count of failures in a row',
    unreachableAfter: 2,
    rounds: [true, false, true, false, false],
    expected: ['REACHABLE', 'REACHABLE', 'REACHABLE', 'REACHABLE', 'UNREACHABLE'],
  },
  {
    name: 'one success brings an UNREACHABLE VIM back at once',
    unreachableAfter: 2,
    rounds: [false, false, false, true],
    expected: ['PENDING', 'UNREACHABLE', 'UNREACHABLE', 'REACHABLE'],
  },
  {
    name: 'UNREACHABLE stays while failures go on',
    unreachableAfter: 1,
    rounds: [true, false, false, false],
    expected: ['REACHABLE', 'UNREACHABLE', 'UNREACHABLE', 'UNREACHABLE'],
  },
];

for (const c of cases) {
  test(`decide: ${c.name}`, (t) => {
    let decision: Decision = initialDecision;
    const decided: DecidedStatus[] = [];
    for (const ok of c.rounds) {
      decision = decide(decision, ok, c.unreachableAfter);
      decided.push(decision.status);
    }
    t.deepEqual(decided, c.expected);
  });
}

test('decide counts failed rounds in a row and resets on success', (t) => {
  let d = decide(initialDecision, false, 5);
  d = decide(d, false, 5);
  t.deepEqual(d, { status: 'PENDING', failedRoundsInRow: 2 });
  d = decide(d, true, 5);
  t.deepEqual(d, { status: 'REACHABLE', failedRoundsInRow: 0 });
});

test('decide is pure: the previous decision is not changed', (t) => {
  const previous: Decision = { status: 'REACHABLE', failedRoundsInRow: 0 };
  const next = decide(previous, false, 1);
  t.deepEqual(previous, { status: 'REACHABLE', failedRoundsInRow: 0 });
  t.is(next.status, 'UNREACHABLE');
  t.is(initialDecision.status, 'PENDING');
});

test('an action given the stored status starts from it: a blip in its first rounds is not news', (t) => {
  let d = startingDecision('REACHABLE');
  d = decide(d, false, 3);
  d = decide(d, false, 3);
  t.is(d.status, 'REACHABLE', 'two failed rounds of three: still REACHABLE, not PENDING');
  t.is(decide(d, false, 3).status, 'UNREACHABLE');
  const refused = startingDecision('UNREACHABLE', 'CREDENTIALS_REJECTED');
  t.deepEqual(decide(refused, false, 3), { status: 'UNREACHABLE', reason: 'CREDENTIALS_REJECTED', failedRoundsInRow: 1 });
  t.is(decide(startingDecision('UNREACHABLE'), true, 3).status, 'REACHABLE');
  t.is(startingDecision(undefined), initialDecision);
  t.is(startingDecision('PENDING'), initialDecision);
});
