// The contracts' descriptors: `gen/descriptor.binpb`, the FileDescriptorSet
// `npm run gen` writes with buf (every file, imports included, fully-qualified
// names). Read once, on first use, and shared: reflection serves its files,
// the request check walks its messages.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createFileRegistry, fromBinary, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, type FileDescriptorSet } from '@bufbuild/protobuf/wkt';

const descriptorPath = fileURLToPath(new URL('../gen/descriptor.binpb', import.meta.url));

let set: FileDescriptorSet | undefined;
let registry: FileRegistry | undefined;

/** The descriptor set as buf wrote it. */
export function descriptorSet(): FileDescriptorSet {
  return (set ??= fromBinary(FileDescriptorSetSchema, readFileSync(descriptorPath)));
}

/** Every message, enum and service of the contracts, by fully-qualified name. */
export function descriptorRegistry(): FileRegistry {
  return (registry ??= createFileRegistry(descriptorSet()));
}
