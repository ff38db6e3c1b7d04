// Server streams share the event loop fairly: past a turn's budget they wait
// for the next turn, so a timer (I/O, a unary call) gets its turn while
// thousands of messages are being written.
import test from 'ava';
import { createStreamPacer } from '../common/stream-pacer.js';

test('past its budget a turn yields to the event loop; every taker gets through, in order', async (t) => {
  const pacer = createStreamPacer(100);
  let timerRanAfter = -1;
  let taken = 0;
  setTimeout(() => (timerRanAfter = taken), 0);
  const order: number[] = [];
  await Promise.all(
    Array.from({ length: 50 }, async (_, stream) => {
      for (let i = 0; i < 40; i++) {
        const wait = pacer.take();
        if (wait) await wait;
        taken++;
        if (i === 39) order.push(stream);
      }
    }),
  );
  t.is(taken, 2_000);
  t.true(timerRanAfter >= 0 && timerRanAfter < 2_000, `the timer ran after ${timerRanAfter} of 2,000 messages, not after all of them`);
  t.is(order.length, 50);
});

test('under the budget nothing waits', (t) => {
  const pacer = createStreamPacer(10);
  for (let i = 0; i < 10; i++) t.is(pacer.take(), undefined);
  t.truthy(pacer.take());
});
