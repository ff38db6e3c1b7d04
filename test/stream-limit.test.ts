import test from 'ava';
import { createStreamLimiter } from '../common/stream-limit.js';

test('a key holds at most maxPerKey streams; others are not affected', (t) => {
  const limiter = createStreamLimiter({ maxPerKey: 2 });
  const a1 = limiter.acquire('alice');
  const a2 = limiter.acquire('alice');
  t.truthy(a1);
  t.truthy(a2);
  t.is(limiter.acquire('alice'), undefined, 'the third is refused');
  t.is(limiter.count('alice'), 2);
  t.truthy(limiter.acquire('bob'), 'another key has its own allowance');
  t.is(limiter.count('bob'), 1);
  t.is(limiter.count('carol'), 0);
});

test('release frees one place, and only once', (t) => {
  const limiter = createStreamLimiter({ maxPerKey: 2 });
  const a1 = limiter.acquire('alice')!;
  const a2 = limiter.acquire('alice')!;
  a1();
  a1();
  a1();
  t.is(limiter.count('alice'), 1, 'a repeated release counts once');
  const a3 = limiter.acquire('alice');
  t.truthy(a3);
  t.is(limiter.acquire('alice'), undefined);
  a2();
  a3!();
  a2();
  t.is(limiter.count('alice'), 0);
  t.truthy(limiter.acquire('alice'));
});

test('a released key leaves nothing behind, and the limit holds again after reuse', (t) => {
  const limiter = createStreamLimiter({ maxPerKey: 1 });
  for (let i = 0; i < 1_000; i++) {
    const release = limiter.acquire(`peer:${i}`)!;
    t.is(limiter.acquire(`peer:${i}`), undefined);
    release();
  }
  for (let i = 0; i < 1_000; i++) t.is(limiter.count(`peer:${i}`), 0);
  const r = limiter.acquire('peer:0');
  t.truthy(r);
  t.is(limiter.acquire('peer:0'), undefined);
});

test('maxPerKey must be a whole number of at least 1', (t) => {
  t.throws(() => createStreamLimiter({ maxPerKey: 0 }), { instanceOf: RangeError });
  t.throws(() => createStreamLimiter({ maxPerKey: 1.5 }), { instanceOf: RangeError });
  t.notThrows(() => createStreamLimiter({ maxPerKey: 1 }));
});
