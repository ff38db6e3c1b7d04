// gRPC server reflection, v1 and v1alpha, served from the descriptor set that
// `npm run gen` writes with buf: the very bytes protoc-compatible tools expect,
// with fully-qualified type names, so grpcurl and Postman resolve every file
// by name and need no .proto files.
import { toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, type DescriptorProto, type EnumDescriptorProto } from '@bufbuild/protobuf/wkt';
import { Status } from 'nice-grpc';
import * as v1 from '../gen/grpc/reflection/v1/reflection.js';
import * as v1alpha from '../gen/grpc/reflection/v1alpha/reflection.js';
import { descriptorSet } from './descriptors.js';
import type { ServiceEntry } from './grpc-server.js';

interface DescriptorIndex {
  files: Map<string, { bytes: Buffer; deps: string[] }>;
  symbols: Map<string, string>;
}

let cached: DescriptorIndex | undefined;

function loadIndex(): DescriptorIndex {
  if (cached) return cached;
  const set = descriptorSet();
  const files: DescriptorIndex['files'] = new Map();
  const symbols: DescriptorIndex['symbols'] = new Map();
  for (const file of set.file) {
    files.set(file.name, { bytes: Buffer.from(toBinary(FileDescriptorProtoSchema, file)), deps: file.dependency });
    const prefix = file.package ? `${file.package}.` : '';
    const addEnum = (e: EnumDescriptorProto, scope: string) => symbols.set(`${scope}${e.name}`, file.name);
    const addMessage = (m: DescriptorProto, scope: string) => {
      const name = `${scope}${m.name}`;
      symbols.set(name, file.name);
      for (const f of m.field) symbols.set(`${name}.${f.name}`, file.name);
      for (const n of m.nestedType) addMessage(n, `${name}.`);
      for (const e of m.enumType) addEnum(e, `${name}.`);
    };
    for (const m of file.messageType) addMessage(m, prefix);
    for (const e of file.enumType) addEnum(e, prefix);
    for (const s of file.service) {
      symbols.set(`${prefix}${s.name}`, file.name);
      for (const m of s.method) symbols.set(`${prefix}${s.name}.${m.name}`, file.name);
    }
  }
  cached = { files, symbols };
  return cached;
}

/** The file and everything it imports, transitively. */
function withDependencies(index: DescriptorIndex, name: string): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    if (seen.has(n)) return;
    seen.add(n);
    const f = index.files.get(n);
    if (!f) return;
    out.push(f.bytes);
    for (const d of f.deps) visit(d);
  };
  visit(name);
  return out;
}

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

function answer(index: DescriptorIndex, services: string[], request: Request): Response {
  const base = { validHost: request.host, originalRequest: request };
  const notFound = (what: string): Response => ({
    ...base,
    errorResponse: { errorCode: Status.NOT_FOUND, errorMessage: `${what} not found` },
  });
  if (request.listServices !== undefined) {
    return { ...base, listServicesResponse: { service: services.map((name) => ({ name })) } };
  }
  if (request.fileByFilename !== undefined) {
    if (!index.files.has(request.fileByFilename)) return notFound(`file ${request.fileByFilename}`);
    return { ...base, fileDescriptorResponse: { fileDescriptorProto: withDependencies(index, request.fileByFilename) } };
  }
  if (request.fileContainingSymbol !== undefined) {
    const file = index.symbols.get(request.fileContainingSymbol.replace(/^\./, ''));
    if (!file) return notFound(`symbol ${request.fileContainingSymbol}`);
    return { ...base, fileDescriptorResponse: { fileDescriptorProto: withDependencies(index, file) } };
  }
  if (request.fileContainingExtension !== undefined) return notFound('extension');
  if (request.allExtensionNumbersOfType !== undefined) {
    const type = request.allExtensionNumbersOfType.replace(/^\./, '');
    if (!index.symbols.has(type)) return notFound(`type ${type}`);
    return { ...base, allExtensionNumbersResponse: { baseTypeName: type, extensionNumber: [] } };
  }
  return { ...base, errorResponse: { errorCode: Status.INVALID_ARGUMENT, errorMessage: 'no request set' } };
}

export const reflectionServiceNames = [v1.ServerReflectionDefinition.fullName, v1alpha.ServerReflectionDefinition.fullName];

/** Reflection services (both versions) that list `serviceNames` and themselves. */
export function createReflectionServices(serviceNames: string[]): ServiceEntry[] {
  const index = loadIndex();
  const services = [...serviceNames, ...reflectionServiceNames];
  const implementation = {
    async *serverReflectionInfo(requests: AsyncIterable<Request>) {
      for await (const request of requests) yield answer(index, services, request);
    },
  };
  // v1alpha messages are field-for-field the same as v1's.
  return [
    { definition: v1.ServerReflectionDefinition, implementation },
    { definition: v1alpha.ServerReflectionDefinition, implementation },
  ];
}
