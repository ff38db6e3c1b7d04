// The grpc_server_* metrics of go-grpc-prometheus, recorded by a nice-grpc
// server middleware: started, handled (by grpc_code, spelled as grpc-go
// spells it), handling seconds, messages received and sent. A method's series
// are found once, on its first call; after that a call costs a map lookup and
// a few additions (the conductor's UpdateVim runs thousands of times a second).
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type CallContext, type MethodDescriptor, type ServerMiddlewareCall } from 'nice-grpc';
import type { CounterSeries, GrpcServerMetrics, HistogramSeries } from './metrics.js';

/** grpc-go's names of the status codes, by number. */
export const grpcCodeNames = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;

interface MethodSeries {
  started: CounterSeries;
  received: CounterSeries;
  sent: CounterSeries;
  seconds: HistogramSeries;
  /** By code number, made on first use. */
  handled: Array<CounterSeries | undefined>;
  labels: { grpc_type: string; grpc_service: string; grpc_method: string };
}

function grpcType(method: MethodDescriptor): string {
  if (method.requestStream) return method.responseStream ? 'bidi_stream' : 'client_stream';
  return method.responseStream ? 'server_stream' : 'unary';
}

/** The code a call ended with, as the client sees it. */
function codeOf(err: unknown): number {
  if (err instanceof ServerError) return err.code;
  if (isAbortError(err)) return Status.CANCELLED;
  return Status.UNKNOWN;
}

export function createGrpcMetricsMiddleware(metrics: GrpcServerMetrics) {
  const byPath = new Map<string, MethodSeries>();

  function seriesOf(method: MethodDescriptor): MethodSeries {
    let s = byPath.get(method.path);
    if (s) return s;
    const slash = method.path.lastIndexOf('/');
    const labels = {
      grpc_type: grpcType(method),
      grpc_service: method.path.slice(1, slash),
      grpc_method: method.path.slice(slash + 1),
    };
    s = {
      started: metrics.started.of(labels),
      received: metrics.received.of(labels),
      sent: metrics.sent.of(labels),
      seconds: metrics.handlingSeconds.of(labels),
      handled: [],
      labels,
    };
    byPath.set(method.path, s);
    return s;
  }

  function handled(s: MethodSeries, code: number): CounterSeries {
    return (s.handled[code] ??= metrics.handled.of({ ...s.labels, grpc_code: grpcCodeNames[code] ?? 'Unknown' }));
  }

  async function* countMessages<T>(messages: AsyncIterable<T>, counter: CounterSeries): AsyncIterable<T> {
    for await (const m of messages) {
      counter.inc();
      yield m;
    }
  }

  return async function* grpcMetrics<Req, Res>(call: ServerMiddlewareCall<Req, Res>, context: CallContext) {
    const s = seriesOf(call.method);
    s.started.inc();
    const startedAt = performance.now();
    // A stream the client leaves ends this generator without an error: Canceled.
    let code: number = Status.CANCELLED;
    let request: Req | AsyncIterable<Req>;
    if (call.requestStream) request = countMessages(call.request, s.received);
    else {
      s.received.inc();
      request = call.request;
    }
    try {
      if (!call.responseStream) {
        const response = yield* call.next(request, context);
        s.sent.inc();
        code = Status.OK;
        return response;
      }
      for await (const message of call.next(request, context)) {
        s.sent.inc();
        yield message;
      }
      // A handler that ends quietly because its client went is a call the client cancelled.
      code = context.signal.aborted ? Status.CANCELLED : Status.OK;
      return;
    } catch (err) {
      code = codeOf(err);
      throw err;
    } finally {
      handled(s, code).inc();
      s.seconds.observe((performance.now() - startedAt) / 1000);
    }
  };
}
