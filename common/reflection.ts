// Server reflection (grpc.reflection.v1 and v1alpha) from the descriptor set that
// `npm run gen` writes with buf, so grpcurl and Postman need no .proto files.
// @grpc/reflection registers grpc-js handlers on a grpc-js server; nice-grpc owns
// ours, so we capture its service definitions and serve them with a nice-grpc
// bidi handler that feeds each request to the grpc-js handler through a shim.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GrpcJsServiceDefinition } from 'nice-grpc';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

const descriptorPath = fileURLToPath(new URL('../gen/descriptor.binpb', import.meta.url));

type GrpcJsBidiHandler = (stream: EventEmitter & { write(m: unknown): void; end(): void }) => void;

export interface ReflectionRegistration {
  definition: GrpcJsServiceDefinition;
  implementation: Record<string, (requests: AsyncIterable<unknown>) => AsyncIterable<unknown>>;
}

let cachedPackage: protoLoader.PackageDefinition | undefined;

function loadPackage(): protoLoader.PackageDefinition {
  cachedPackage ??= protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(descriptorPath), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cachedPackage;
}

/** Reflection services that list only `serviceNames` (plus reflection itself). */
export function createReflectionRegistrations(serviceNames: string[]): ReflectionRegistration[] {
  const reflection = new ReflectionService(loadPackage(), { services: [...serviceNames] });
  const captured: Array<{ definition: GrpcJsServiceDefinition; handlers: Record<string, GrpcJsBidiHandler> }> = [];
  reflection.addToServer({
    addService(definition: GrpcJsServiceDefinition, handlers: Record<string, unknown>) {
      captured.push({ definition, handlers: handlers as Record<string, GrpcJsBidiHandler> });
    },
  } as never);
  return captured.map(({ definition, handlers }) => {
    const implementation: ReflectionRegistration['implementation'] = {};
    for (const [method, handler] of Object.entries(handlers)) {
      implementation[method] = (requests) => bridge(handler, requests);
    }
    return { definition, implementation };
  });
}

async function* bridge(handler: GrpcJsBidiHandler, requests: AsyncIterable<unknown>): AsyncIterable<unknown> {
  const replies: unknown[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const shim = Object.assign(new EventEmitter(), {
    write(message: unknown) {
      replies.push(message);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
  });
  handler(shim);
  const pump = (async () => {
    for await (const request of requests) shim.emit('data', request);
    shim.emit('end');
  })();
  pump.catch(() => shim.end());
  while (true) {
    while (replies.length > 0) yield replies.shift();
    if (ended) return;
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  }
}
