// Walks a server's gRPC reflection the way grpcurl and Postman do: list the
// services, fetch the file declaring each one, then fetch every imported file
// by name until nothing is missing. Building a registry from what came back
// proves that a client holding no .proto file can describe every method.
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createFileRegistry, fromBinary, type DescService, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { create } from '@bufbuild/protobuf';

export type ReflectionVersion = 'v1' | 'v1alpha';

export interface ReflectionWalk {
  /** Every name list_services returned. */
  services: string[];
  /** Every file fetched, by file name. */
  files: Map<string, FileDescriptorProto>;
  /** A registry built from the fetched files only (throws while walking if an import was unresolvable). */
  registry: FileRegistry;
  /** The service as a client would see it, or undefined when reflection cannot describe it. */
  service(fullName: string): DescService | undefined;
}

interface ReflectionRequest {
  host?: string;
  list_services?: string;
  file_containing_symbol?: string;
  file_by_filename?: string;
}

interface ReflectionResponse {
  message_response: 'list_services_response' | 'file_descriptor_response' | 'error_response' | string;
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

type ReflectionStream = grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>;

function loadClientConstructor(version: ReflectionVersion): grpc.ServiceClientConstructor {
  const require = createRequire(import.meta.url);
  const root = path.dirname(require.resolve('@grpc/reflection/package.json'));
  const file = path.join(root, 'build', 'proto', 'grpc', 'reflection', version, 'reflection.proto');
  const definition = protoLoader.loadSync(file, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<ReflectionVersion, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  return pkg.grpc.reflection[version].ServerReflection;
}

/** Asks one question at a time on one stream, as grpcurl does. */
function createAsker(stream: ReflectionStream) {
  const waiting: Array<{ resolve: (r: ReflectionResponse) => void; reject: (e: Error) => void }> = [];
  let failure: Error | undefined;
  stream.on('data', (response: ReflectionResponse) => waiting.shift()?.resolve(response));
  stream.on('error', (err: Error) => {
    failure = err;
    for (const w of waiting.splice(0)) w.reject(err);
  });
  stream.on('end', () => {
    failure ??= new Error('reflection stream ended');
    for (const w of waiting.splice(0)) w.reject(failure);
  });
  return (request: ReflectionRequest) =>
    new Promise<ReflectionResponse>((resolve, reject) => {
      if (failure) return reject(failure);
      waiting.push({ resolve, reject });
      stream.write(request);
    });
}

export async function walkReflection(
  address: string,
  version: ReflectionVersion = 'v1',
  options: { deadlineMs?: number } = {},
): Promise<ReflectionWalk> {
  const Client = loadClientConstructor(version);
  const client = new Client(address, grpc.credentials.createInsecure());
  const stream = (client as unknown as { ServerReflectionInfo(options: grpc.CallOptions): ReflectionStream }).ServerReflectionInfo({
    deadline: Date.now() + (options.deadlineMs ?? 10_000),
  });
  const ask = createAsker(stream);
  const files = new Map<string, FileDescriptorProto>();
  const take = (response: ReflectionResponse, question: string) => {
    if (response.error_response) {
      throw new Error(
        `reflection ${version}: ${question}: error ${response.error_response.error_code} ${response.error_response.error_message}`,
      );
    }
    const protos = response.file_descriptor_response?.file_descriptor_proto;
    if (!protos || protos.length === 0) throw new Error(`reflection ${version}: ${question}: no file descriptor in the answer`);
    for (const bytes of protos) {
      const file = fromBinary(FileDescriptorProtoSchema, new Uint8Array(bytes));
      if (!files.has(file.name)) files.set(file.name, file);
    }
  };
  try {
    const listed = await ask({ host: '', list_services: '' });
    if (!listed.list_services_response)
      throw new Error(`reflection ${version}: list_services: unexpected answer ${listed.message_response}`);
    const services = listed.list_services_response.service.map((s) => s.name);
    for (const name of services) take(await ask({ host: '', file_containing_symbol: name }), `file_containing_symbol ${name}`);
    // Resolve imports by file name until the set is closed.
    for (let missing = unresolved(files); missing.length > 0; missing = unresolved(files)) {
      for (const name of missing) {
        take(await ask({ host: '', file_by_filename: name }), `file_by_filename ${name}`);
        if (!files.has(name)) throw new Error(`reflection ${version}: file_by_filename ${name} answered other files only`);
      }
    }
    qualifyTypeNames(files);
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: dependencyOrder(files) }));
    return {
      services,
      files,
      registry,
      service: (fullName) => registry.getService(fullName),
    };
  } finally {
    stream.end();
    stream.cancel();
    client.close();
  }
}

function unresolved(files: Map<string, FileDescriptorProto>): string[] {
  const missing = new Set<string>();
  for (const file of files.values()) for (const dep of file.dependency) if (!files.has(dep)) missing.add(dep);
  return [...missing];
}

// descriptor.proto allows a type_name without the leading dot, resolved by
// C++-like scoping from the referring message or service outwards; protoc and
// Go's protodesc (under grpcurl) do so, and @grpc/reflection serves such names
// (grpc-node #2595). Like protodesc, a type resolves only if it is declared in
// the file itself or in a file it imports: a served file that uses a type
// without importing its file cannot be loaded by grpcurl ("resolved X, but Y is
// not imported"). @bufbuild/protobuf's registry wants full names, so qualify
// them here and fail with that same diagnosis.
function qualifyTypeNames(files: Map<string, FileDescriptorProto>): void {
  const declaredIn = new Map<string, string>();
  const collect = (fileName: string, prefix: string, messages: DescriptorProto[], enums: Array<{ name: string }>) => {
    for (const e of enums) declaredIn.set(`${prefix}.${e.name}`, fileName);
    for (const m of messages) {
      declaredIn.set(`${prefix}.${m.name}`, fileName);
      collect(fileName, `${prefix}.${m.name}`, m.nestedType, m.enumType);
    }
  };
  for (const file of files.values()) collect(file.name, file.package ? `.${file.package}` : '', file.messageType, file.enumType);

  for (const file of files.values()) {
    const visible = new Set([file.name, ...file.dependency]);
    for (const dep of file.dependency) {
      const d = files.get(dep);
      for (const i of d?.publicDependency ?? []) if (d) visible.add(d.dependency[i]);
    }
    const resolve = (ref: string, scope: string, where: string): string => {
      if (ref === '') return ref;
      let foundElsewhere: string | undefined;
      const candidates: string[] = [];
      if (ref.startsWith('.')) candidates.push(ref);
      else
        for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
          candidates.push(`${s}.${ref}`);
          if (s === '') break;
        }
      for (const candidate of candidates) {
        const owner = declaredIn.get(candidate);
        if (owner && visible.has(owner)) return candidate;
        if (owner) foundElsewhere ??= `${candidate.slice(1)} is declared in ${owner}, which ${file.name} does not import`;
      }
      throw new Error(`reflection: ${where} refers to ${ref}: ${foundElsewhere ?? 'no served file declares it'}`);
    };
    const visitMessages = (scope: string, messages: DescriptorProto[]) => {
      for (const m of messages) {
        const inner = `${scope}.${m.name}`;
        for (const f of [...m.field, ...m.extension]) {
          f.typeName = resolve(f.typeName, inner, `${inner.slice(1)}.${f.name}`);
          f.extendee = resolve(f.extendee, inner, `${inner.slice(1)}.${f.name}`);
        }
        visitMessages(inner, m.nestedType);
      }
    };
    const pkg = file.package ? `.${file.package}` : '';
    visitMessages(pkg, file.messageType);
    for (const f of file.extension) {
      f.typeName = resolve(f.typeName, pkg, `${file.name} extension ${f.name}`);
      f.extendee = resolve(f.extendee, pkg, `${file.name} extension ${f.name}`);
    }
    for (const service of file.service) {
      const scope = `${pkg}.${service.name}`;
      for (const method of service.method) {
        method.inputType = resolve(method.inputType, scope, `${scope.slice(1)}.${method.name}`);
        method.outputType = resolve(method.outputType, scope, `${scope.slice(1)}.${method.name}`);
      }
    }
  }
}

// createFileRegistry wants each file after its imports.
function dependencyOrder(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const ordered: FileDescriptorProto[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const file = files.get(name);
    if (!file) throw new Error(`reflection: ${name} is imported but was never served`);
    for (const dep of file.dependency) visit(dep);
    ordered.push(file);
  };
  for (const name of files.keys()) visit(name);
  return ordered;
}
