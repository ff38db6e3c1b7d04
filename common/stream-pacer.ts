// Fairness between server streams and everything else on the event loop. A
// stream's messages are written from promise continuations: while grpc-js
// accepts writes, thousands of streams can keep the loop busy for seconds
// (2,000 WatchVims send_initial of 400 VIMs are 800,000 writes) and a unary
// call waits behind them all. Every server stream message takes a unit of a
// budget shared by the gRPC server (one per role); once a turn's budget is spent, streams wait
// for the next turn of the event loop, so I/O (new calls, database answers,
// probes) is served at least every `perTurn` messages. The first messages of
// a burst still go out at once: an alarm to a hundred subscribers is 100 units.

export interface StreamPacer {
  /** Resolves at once while this turn has budget left, otherwise in a later turn. */
  take(): Promise<void> | undefined;
}

export function createStreamPacer(perTurn = 256): StreamPacer {
  let used = 0;
  let resetScheduled = false;
  const waiting: Array<() => void> = [];
  const nextTurn = () => {
    resetScheduled = false;
    used = 0;
    // Released in order, a turn's budget at a time; the rest wait for the next turn.
    for (const resume of waiting.splice(0, perTurn)) {
      used++;
      resume();
    }
    if (waiting.length > 0 || used > 0) schedule();
  };
  const schedule = () => {
    if (resetScheduled) return;
    resetScheduled = true;
    // setImmediate runs after the I/O poll of this turn of the loop.
    setImmediate(nextTurn);
  };
  return {
    take() {
      schedule();
      if (used < perTurn && waiting.length === 0) {
        used++;
        return undefined;
      }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
  };
}
