// deploy/kubernetes/ and the Dockerfile refer to each other by names, ports, labels and paths that
// no cluster checks until an apply half works. This reads them as data and checks every reference:
// Services and PodDisruptionBudgets select a workload, ports and probes name declared container
// ports, every variable set is one common/env.ts declares and every address binds a declared port,
// Secrets and ConfigMaps come from the kustomization, the executors reach the conductors through the
// headless Service, the servers name every executor pod; and the image's build holds together.
import { execFileSync, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkServerIdentity } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { createAuth } from '../common/auth/authenticator.js';
import { loadPolicy } from '../common/auth/policy.js';
import { environmentSchema, parseEnvironment } from '../common/env.js';
import { createGrpcServer } from '../common/grpc-server.js';
import { ServingStatus } from '../common/health.js';
import type { Tls } from '../common/tls.js';
import { startExecutor } from '../executor/main.js';
import { makeCertsScript, makeRoleCertificates } from './support/certificates.js';
import { testLogger } from './support/logger.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const folder = path.join(root, 'deploy/kubernetes');
const probeScript = 'deploy/kubernetes/grpc-health-probe.mjs';

// --- the manifests as data ------------------------------------------------------------------------

interface Port {
  name?: string;
  containerPort?: number;
  port?: number;
  targetPort?: number | string;
}
interface Probe {
  exec?: { command: string[] };
  grpc?: { port: number };
  tcpSocket?: { port: number | string };
  httpGet?: { port: number | string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: Port[];
  env?: EnvVar[];
  envFrom?: unknown[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { memory?: string } };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface Volume {
  name: string;
  secret?: { secretName: string; items?: Array<{ key: string; path: string }> };
  configMap?: { name: string; items?: Array<{ key: string; path: string }> };
  emptyDir?: object;
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: {
    replicas?: number;
    serviceName?: string;
    selector?: Record<string, string> & { matchLabels?: Record<string, string> };
    clusterIP?: string;
    ports?: Port[];
    template?: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
    minAvailable?: number;
    maxUnavailable?: number;
  };
}
interface Generator {
  name: string;
  files?: string[];
  literals?: string[];
  envs?: string[];
}
interface Kustomization {
  namespace: string;
  resources: string[];
  configMapGenerator?: Generator[];
  secretGenerator?: Generator[];
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
}

function parseYamlFile<T>(file: string): T[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  return docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${path.relative(root, file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as T;
  });
}

function loadDeployment(dir: string) {
  const [kustomization] = parseYamlFile<Kustomization>(path.join(dir, 'kustomization.yaml'));
  if (!kustomization) throw new Error('kustomization.yaml is empty');
  const resources = kustomization.resources.flatMap((f) => parseYamlFile<Resource>(path.join(dir, f)).filter(Boolean));
  const workloads = resources.filter((r) => r.kind === 'Deployment' || r.kind === 'StatefulSet');
  const services = resources.filter((r) => r.kind === 'Service');
  const budgets = resources.filter((r) => r.kind === 'PodDisruptionBudget');
  return { kustomization, resources, workloads, services, budgets };
}

const deployment = loadDeployment(folder);

/** "name=path" or "path": the key a generated Secret/ConfigMap holds, and the file. */
function generatorEntries(g: Generator): Array<{ key: string; file: string }> {
  return (g.files ?? []).map((entry) => {
    const eq = entry.indexOf('=');
    return eq >= 0 ? { key: entry.slice(0, eq), file: entry.slice(eq + 1) } : { key: path.basename(entry), file: entry };
  });
}

const podLabels = (w: Resource) => w.spec!.template!.metadata.labels;
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);
const containersOf = (w: Resource) => [...w.spec!.template!.spec.containers, ...(w.spec!.template!.spec.initContainers ?? [])];
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
const declaredVariables = new Set(Object.keys(environmentSchema.shape));
const roleNames = ['server', 'conductor', 'executor', 'inspector'] as const;
type Role = (typeof roleNames)[number];

function roleOf(c: Container): Role {
  const role = c.args?.[0];
  if (!(roleNames as readonly string[]).includes(role ?? '')) throw new Error(`container ${c.name}: args[0] ${role} is not a role`);
  return role as Role;
}

function envOf(c: Container): Map<string, EnvVar> {
  return new Map((c.env ?? []).map((e) => [e.name, e]));
}

function workloadOf(selector: Record<string, string>): Resource[] {
  return deployment.workloads.filter((w) => selects(selector, podLabels(w)));
}

function probeArgs(probe: Probe | undefined): Map<string, string | true> | undefined {
  const command = probe?.exec?.command;
  if (!command) return undefined;
  const args = new Map<string, string | true>();
  for (let i = command.indexOf(`/app/${probeScript}`) + 1; i > 0 && i < command.length; i++) {
    const flag = command[i]!;
    const next = command[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      args.set(flag, next);
      i++;
    } else args.set(flag, true);
  }
  return args;
}

function clusterName(service: string, port: number, pod?: string): string {
  return `${pod ? `${pod}.` : ''}${service}.${deployment.kustomization.namespace}.svc.cluster.local:${port}`;
}

// --- the checks ------------------------------------------------------------------------------------

test('every manifest parses, and the kustomization lists every file of the folder', (t) => {
  const k = deployment.kustomization;
  const listed = new Set([
    'kustomization.yaml',
    ...k.resources,
    ...[...(k.configMapGenerator ?? []), ...(k.secretGenerator ?? [])].flatMap((g) => generatorEntries(g).map((e) => e.file)),
  ]);
  // The probe script is not a manifest: the image carries it (checked with the Dockerfile below).
  const shipped = new Set([probeScript.slice('deploy/kubernetes/'.length)]);
  const files = readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(folder, path.join(d.parentPath, d.name)))
    .filter((f) => !f.startsWith(`secrets${path.sep}`));
  t.true(files.length >= 6, files.join(', '));
  for (const f of files)
    t.true(listed.has(f) || shipped.has(f), `${f} is in deploy/kubernetes but neither the kustomization nor the image uses it`);
  for (const f of k.resources) t.true(existsSync(path.join(folder, f)), `resources: ${f} does not exist`);
  for (const r of deployment.resources) {
    t.truthy(r.apiVersion && r.kind && r.metadata?.name, JSON.stringify(r).slice(0, 80));
    // The kustomization's namespace applies; a manifest of its own would contradict it.
    t.true(r.metadata.namespace === undefined || r.metadata.namespace === k.namespace, `${r.kind}/${r.metadata.name}: namespace`);
  }
  // A generated Secret's files come from secrets/, which the operator fills and git never holds.
  for (const g of k.secretGenerator ?? []) {
    for (const e of generatorEntries(g)) t.true(e.file.startsWith('secrets/'), `secretGenerator ${g.name}: ${e.file} is outside secrets/`);
  }
  // The image the Dockerfile builds, tagged with the version it carries.
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  t.deepEqual(k.images, [{ name: 'vimmon', newTag: version }]);
  const ignore = readFileSync(path.join(folder, 'secrets/.gitignore'), 'utf8');
  t.regex(ignore, /^\*$/m, 'secrets/.gitignore ignores everything');
});

test('a Deployment or StatefulSet for every role, its selector matching its pods', (t) => {
  const roles = deployment.workloads.map((w) => roleOf(w.spec!.template!.spec.containers[0]!));
  t.deepEqual([...roles].sort(), [...roleNames].sort());
  const replicas = Object.fromEntries(deployment.workloads.map((w) => [roleOf(w.spec!.template!.spec.containers[0]!), w.spec!.replicas]));
  t.is(replicas.server, 2);
  t.is(replicas.conductor, 3);
  t.true((replicas.executor ?? 0) >= 2, 'several executors');
  t.is(replicas.inspector, 1);
  for (const w of deployment.workloads) {
    const matchLabels = w.spec!.selector!.matchLabels!;
    t.true(Object.keys(matchLabels).length > 0, `${w.metadata.name}: empty selector`);
    t.true(selects(matchLabels, podLabels(w)), `${w.metadata.name}: selector does not match its pod labels`);
    // No two workloads may claim each other's pods.
    t.is(workloadOf(matchLabels).length, 1, `${w.metadata.name}: selector matches other workloads' pods`);
  }
});

test('every Service selects one workload and targets its declared ports, by the same name', (t) => {
  t.true(deployment.services.length >= 4);
  for (const s of deployment.services) {
    const what = `Service ${s.metadata.name}`;
    const matched = workloadOf(s.spec!.selector as Record<string, string>);
    t.is(matched.length, 1, `${what}: selects ${matched.length} workloads`);
    const w = matched[0];
    if (!w) continue;
    const ports = containersOf(w).flatMap((c) => c.ports ?? []);
    for (const p of s.spec!.ports ?? []) {
      const target = ports.find((cp) =>
        typeof p.targetPort === 'string' ? cp.name === p.targetPort : cp.containerPort === (p.targetPort ?? p.port),
      );
      t.truthy(target, `${what} port ${p.name}: targets ${p.targetPort}, which ${w.metadata.name} does not declare`);
      t.is(target?.name, p.name, `${what} port ${p.name}: the container calls it ${target?.name}`);
      t.is(target?.containerPort, p.port, `${what} port ${p.name}: ${p.port} outside, ${target?.containerPort} inside`);
    }
  }
});

test('every PodDisruptionBudget selects one workload and lets a drain go on', (t) => {
  t.is(deployment.budgets.length, deployment.workloads.length, 'one budget per workload');
  for (const b of deployment.budgets) {
    const matched = workloadOf(b.spec!.selector!.matchLabels!);
    t.is(matched.length, 1, `PodDisruptionBudget ${b.metadata.name}: selects ${matched.length} workloads`);
    const replicas = matched[0]?.spec?.replicas ?? 0;
    const minAvailable = b.spec!.minAvailable ?? 0;
    // minAvailable equal to replicas (or maxUnavailable 0) would block every node drain for ever.
    t.true(b.spec!.maxUnavailable !== undefined ? b.spec!.maxUnavailable > 0 : minAvailable < replicas, `${b.metadata.name} blocks drains`);
  }
});

test('every variable set is declared by common/env.ts, its value valid, every address on a declared port', (t) => {
  for (const w of deployment.workloads) {
    for (const c of containersOf(w)) {
      const where = `${w.metadata.name}/${c.name}`;
      t.is(c.envFrom, undefined, `${where}: envFrom hides which variables are set`);
      const plain: Record<string, string> = {};
      for (const e of c.env ?? []) {
        t.true(declaredVariables.has(e.name), `${where}: ${e.name} is not a variable common/env.ts declares`);
        t.true((e.value === undefined) !== (e.valueFrom === undefined), `${where}: ${e.name} needs a value or valueFrom`);
        if (e.value !== undefined) plain[e.name] = e.value;
      }
      // The plain values pass the same checks as at a role's start (a secret's value is the operator's).
      t.notThrows(() => parseEnvironment(plain), where);
      const containerPorts = new Map((c.ports ?? []).map((p) => [p.containerPort, p.name]));
      const bound = new Set<number>();
      for (const [name, value] of Object.entries(plain)) {
        if (!/^VIMMON_\w*_ADDR$/.test(name)) continue;
        const port = portOf(value);
        t.true(containerPorts.has(port), `${where}: ${name}=${value} is not a declared containerPort`);
        t.true(value.startsWith('0.0.0.0:'), `${where}: ${name}=${value} cannot be reached from outside the pod`);
        bound.add(port);
      }
      for (const [port, name] of containerPorts)
        t.true(bound.has(port!), `${where}: containerPort ${name} (${port}) is bound by no variable`);
      const role = roleOf(c);
      const upper = role.toUpperCase();
      t.true(plain[`VIMMON_${upper}_ADDR`] !== undefined, `${where}: VIMMON_${upper}_ADDR`);
      t.is<number | undefined, number | undefined>(
        portOf(plain[`VIMMON_${upper}_ADDR`] ?? ':0'),
        c.ports?.find((p) => p.name === 'grpc')?.containerPort,
        `${where}: grpc port`,
      );
      const metrics = plain[`VIMMON_${upper}_METRICS_ADDR`];
      t.truthy(metrics, `${where}: VIMMON_${upper}_METRICS_ADDR`);
      t.is<number | undefined, number | undefined>(
        portOf(metrics ?? ':0'),
        c.ports?.find((p) => p.name === 'metrics')?.containerPort,
        `${where}: metrics port`,
      );
      t.is(w.spec!.template!.metadata.annotations?.['prometheus.io/port'], String(portOf(metrics ?? ':0')), `${where}: scrape port`);
      t.is(w.spec!.template!.metadata.annotations?.['prometheus.io/scheme'], 'https', `${where}: /metrics is HTTPS with TLS on`);
    }
  }
});

test('secure beyond loopback: every role has TLS from the Secret and authentication, never VIMMON_INSECURE', (t) => {
  for (const w of deployment.workloads) {
    for (const c of containersOf(w)) {
      const where = `${w.metadata.name}/${c.name}`;
      const env = envOf(c);
      t.false(env.has('VIMMON_INSECURE'), `${where}: VIMMON_INSECURE`);
      const tlsDir = env.get('VIMMON_TLS_DIR')?.value;
      t.truthy(tlsDir, `${where}: VIMMON_TLS_DIR`);
      const mount = c.volumeMounts?.find((m) => m.mountPath === tlsDir);
      const volume = w.spec!.template!.spec.volumes?.find((v) => v.name === mount?.name);
      const role = roleOf(c);
      // make-certs.sh's layout, and only this role's key: a pod cannot present another role's identity.
      t.deepEqual(volume?.secret?.items?.map((i) => i.path).sort(), ['ca.pem', `${role}.key`, `${role}.pem`].sort(), `${where}: TLS files`);
      for (const i of volume?.secret?.items ?? []) t.is(i.key, i.path, `${where}: ${i.key} mounted as ${i.path}`);
      for (const file of ['VIMMON_AUTH_TOKENS_FILE', 'VIMMON_POLICY_FILE', 'OS_CLIENT_CONFIG_FILE']) {
        const value = env.get(file)?.value;
        if (file === 'VIMMON_AUTH_TOKENS_FILE') t.truthy(value, `${where}: ${file}`);
        if (!value) continue;
        const m = c.volumeMounts?.find((vm) => vm.mountPath === path.dirname(value));
        t.truthy(m, `${where}: ${file}=${value} is in no mounted volume`);
        const v = w.spec!.template!.spec.volumes?.find((vol) => vol.name === m?.name);
        const keys = v?.secret?.items?.map((i) => i.path) ?? v?.configMap?.items?.map((i) => i.path) ?? keysOf(v);
        t.true(keys.includes(path.basename(value)), `${where}: ${file}=${value}: the volume holds ${keys.join(', ')}`);
      }
    }
  }
  const server = deployment.workloads.find((w) => roleOf(w.spec!.template!.spec.containers[0]!) === 'server')!;
  // Servers sharing one database must share one key: from the Secret, never the per-pod key file.
  t.is(envOf(server.spec!.template!.spec.containers[0]!).get('VIMMON_SECRET_KEY')?.valueFrom?.secretKeyRef?.name, 'vimmon-secret-key');
  for (const w of deployment.workloads) {
    const role = roleOf(w.spec!.template!.spec.containers[0]!);
    const db = envOf(w.spec!.template!.spec.containers[0]!).get('DATABASE_URL');
    if (role === 'executor') t.is(db, undefined, 'the executor needs no database');
    else t.truthy(db?.valueFrom?.secretKeyRef, `${role}: DATABASE_URL from a Secret`);
  }
});

/** The keys a whole (item-less) Secret or ConfigMap volume holds, from the kustomization's generators. */
function keysOf(v: Volume | undefined): string[] {
  const name = v?.secret?.secretName ?? v?.configMap?.name;
  const k = deployment.kustomization;
  const g = [...(k.secretGenerator ?? []), ...(k.configMapGenerator ?? [])].find((x) => x.name === name);
  return g ? generatorEntries(g).map((e) => e.key) : [];
}

test('every Secret and ConfigMap referenced is generated by the kustomization, with the key asked for', (t) => {
  const k = deployment.kustomization;
  const generated = (kind: 'secret' | 'configMap', name: string) =>
    (kind === 'secret' ? k.secretGenerator : k.configMapGenerator)?.find((g) => g.name === name);
  let references = 0;
  for (const w of deployment.workloads) {
    const spec = w.spec!.template!.spec;
    for (const v of spec.volumes ?? []) {
      const ref = v.secret
        ? (['secret', v.secret.secretName] as const)
        : v.configMap
          ? (['configMap', v.configMap.name] as const)
          : undefined;
      if (!ref) continue;
      references++;
      const g = generated(ref[0], ref[1]);
      t.truthy(g, `${w.metadata.name}: volume ${v.name} wants ${ref[0]} ${ref[1]}, which the kustomization does not make`);
      const keys = g ? generatorEntries(g).map((e) => e.key) : [];
      for (const item of v.secret?.items ?? v.configMap?.items ?? [])
        t.true(keys.includes(item.key), `${w.metadata.name}: ${ref[1]} has no ${item.key}`);
    }
    for (const c of containersOf(w)) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
        if (!ref) continue;
        references++;
        const g = generated(e.valueFrom?.secretKeyRef ? 'secret' : 'configMap', ref.name);
        t.truthy(g, `${w.metadata.name}: ${e.name} wants ${ref.name}, which the kustomization does not make`);
        t.true(
          g ? generatorEntries(g).some((x) => x.key === ref.key) : false,
          `${w.metadata.name}: ${e.name}: ${ref.name} has no key ${ref.key}`,
        );
      }
      for (const m of c.volumeMounts ?? [])
        t.truthy(
          spec.volumes?.find((v) => v.name === m.name),
          `${w.metadata.name}: mount ${m.name}`,
        );
    }
  }
  t.true(references >= 10, `${references} references`);
  // Every role certificate make-certs.sh writes for the four roles, and the CA.
  const tls = generated('secret', 'vimmon-tls');
  t.deepEqual(
    generatorEntries(tls!)
      .map((e) => e.key)
      .sort(),
    ['ca.pem', ...roleNames.flatMap((r) => [`${r}.pem`, `${r}.key`])].sort(),
  );
  // The policy file the roles load is one vimmon accepts.
  t.notThrows(() => loadPolicy(path.join(folder, 'policy.yaml')));
  t.true(loadPolicy(path.join(folder, 'policy.yaml')).grants('metrics')?.includes('identity:token:prometheus'));
});

test('probes: readiness follows SERVING over mutual TLS, liveness wants an answer, on declared ports', (t) => {
  for (const w of deployment.workloads) {
    for (const c of w.spec!.template!.spec.containers) {
      const where = `${w.metadata.name}/${c.name}`;
      const grpcPort = c.ports?.find((p) => p.name === 'grpc')?.containerPort;
      const declared = new Set((c.ports ?? []).flatMap((p) => [p.containerPort, p.name]));
      for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
        const probe = c[kind];
        t.truthy(probe, `${where}: ${kind}`);
        const port = probe?.grpc?.port ?? probe?.tcpSocket?.port ?? probe?.httpGet?.port;
        if (port !== undefined) t.true(declared.has(port), `${where}: ${kind} on ${port}, not a declared port`);
        const args = probeArgs(probe);
        if (!args) continue;
        t.deepEqual(probe?.exec?.command.slice(0, 2), ['node', `/app/${probeScript}`], `${where}: ${kind} command`);
        t.is(args.get('--role'), roleOf(c), `${where}: ${kind} --role`);
        t.is<number | undefined, number | undefined>(Number(args.get('--port')), grpcPort, `${where}: ${kind} --port is not the grpc port`);
        t.is(args.get('--tls-dir'), envOf(c).get('VIMMON_TLS_DIR')?.value, `${where}: ${kind} --tls-dir`);
      }
      // NOT_SERVING (database down, draining) takes the pod out of rotation without restarting it.
      t.false(probeArgs(c.readinessProbe)?.has('--any-answer') ?? true, `${where}: readiness must follow SERVING`);
      t.true(probeArgs(c.livenessProbe)?.get('--any-answer') === true, `${where}: liveness must not follow SERVING`);
    }
  }
});

test('the executors reach the conductors through the headless Service; the servers name every executor pod', (t) => {
  const byRole = (role: Role) => deployment.workloads.find((w) => roleOf(w.spec!.template!.spec.containers[0]!) === role)!;
  const conductor = byRole('conductor');
  const conductorService = deployment.services.find((s) => selects(s.spec!.selector as Record<string, string>, podLabels(conductor)))!;
  t.is(conductorService.spec!.clusterIP, 'None', 'grpc-js balances over the pods only when DNS answers each pod');
  const conductorPort = conductorService.spec!.ports!.find((p) => p.name === 'grpc')!.port!;
  const target = envOf(byRole('executor').spec!.template!.spec.containers[0]!).get('VIMMON_CONDUCTOR_TARGET')?.value;
  t.is(target, `dns:///${clusterName(conductorService.metadata.name, conductorPort)}`);

  const executor = byRole('executor');
  t.is(executor.kind, 'StatefulSet', 'each executor needs a stable name');
  const executorService = deployment.services.find((s) => s.metadata.name === executor.spec!.serviceName);
  t.truthy(executorService, `serviceName ${executor.spec!.serviceName} is no Service`);
  t.is(executorService?.spec?.clusterIP, 'None');
  t.true(selects(executorService!.spec!.selector as Record<string, string>, podLabels(executor)));
  const executorPort = executor.spec!.template!.spec.containers[0]!.ports!.find((p) => p.name === 'grpc')!.containerPort!;
  const expected = Array.from({ length: executor.spec!.replicas! }, (_, i) =>
    clusterName(executorService!.metadata.name, executorPort, `${executor.metadata.name}-${i}`),
  );
  const listed = parseEnvironment({
    VIMMON_EXECUTORS: envOf(byRole('server').spec!.template!.spec.containers[0]!).get('VIMMON_EXECUTORS')?.value,
  }).VIMMON_EXECUTORS;
  t.deepEqual(listed, expected, 'VIMMON_EXECUTORS must list each executor pod, as many as its replicas');
});

test('every pod runs as a non-root user, read-only, without capabilities, within resources', (t) => {
  for (const w of deployment.workloads) {
    const pod = w.spec!.template!.spec;
    t.true(pod.securityContext?.runAsNonRoot, `${w.metadata.name}: runAsNonRoot`);
    t.true((pod.securityContext?.runAsUser ?? 0) > 0, `${w.metadata.name}: runAsUser`);
    for (const c of containersOf(w)) {
      const where = `${w.metadata.name}/${c.name}`;
      t.is(c.image, 'vimmon', `${where}: the kustomization's image`);
      t.true(c.securityContext?.readOnlyRootFilesystem, `${where}: readOnlyRootFilesystem`);
      t.false(c.securityContext?.allowPrivilegeEscalation ?? true, `${where}: allowPrivilegeEscalation`);
      t.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${where}: capabilities`);
      t.truthy(c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory, `${where}: resources`);
      t.truthy(
        c.volumeMounts?.find((m) => m.mountPath === '/tmp'),
        `${where}: a writable /tmp`,
      );
    }
  }
});

// --- the image ------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}

function dockerfile(): Instruction[] {
  const text = readFileSync(path.join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}

/** COPY sources from the build context (not --from a stage), and each destination. */
function contextCopies(ins: Instruction[]): Array<{ sources: string[]; dest: string }> {
  return ins
    .filter((i) => i.op === 'COPY' && !/--from=/.test(i.args))
    .map((i) => {
      const words = i.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      return { sources: words.slice(0, -1), dest: words.at(-1)! };
    });
}

test('Dockerfile: Node 24, built then pruned, the compiled CLI as a non-root user, every port exposed', (t) => {
  const ins = dockerfile();
  const froms = ins.filter((i) => i.op === 'FROM');
  t.true(froms.length >= 2, 'multi-stage');
  for (const f of froms) t.regex(f.args, /^node:24[.-]/, f.args);
  const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args);
  t.true(
    runs.some((r) => /npm install/.test(r) && /npm run build/.test(r) && /npm prune --omit=dev/.test(r)),
    'npm install, npm run build, npm prune --omit=dev',
  );
  const runtime = ins.slice(ins.lastIndexOf(froms.at(-1)!));
  const user = runtime.find((i) => i.op === 'USER')?.args;
  t.truthy(user);
  t.not(user?.split(':')[0], 'root');
  t.not(user?.split(':')[0], '0');
  const entrypoint = JSON.parse(runtime.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
  t.deepEqual(entrypoint, ['node', 'dist/cli/main.js']);
  // tsc -p tsconfig.build.json compiles cli/main.ts to dist/cli/main.js.
  t.true(existsSync(path.join(root, 'cli/main.ts')));
  const workdir = runtime.find((i) => i.op === 'WORKDIR')?.args;
  t.is(workdir, '/app', 'the probes run /app/…');
  // Every port a manifest declares is exposed.
  const exposed = new Set(runtime.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map(Number)));
  for (const w of deployment.workloads)
    for (const c of containersOf(w)) for (const p of c.ports ?? []) t.true(exposed.has(p.containerPort!), `EXPOSE ${p.containerPort}`);
  // No secret in the image: no ENV or ARG carries one.
  for (const i of ins.filter((x) => x.op === 'ENV' || x.op === 'ARG'))
    t.notRegex(i.args, /SECRET|TOKEN|PASSWORD|DATABASE_URL|AMQP_URL/, i.args);

  // Every COPY source exists and no .dockerignore line hides it; the probe script lands where the probes call it.
  const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  t.true(ignored.includes('deploy/kubernetes/secrets'), '.dockerignore keeps the secrets out of the context');
  t.true(ignored.includes('node_modules') && ignored.includes('dist'));
  const copies = contextCopies(ins);
  for (const c of copies) {
    for (const s of c.sources) {
      t.true(existsSync(path.join(root, s)), `COPY ${s}: no such file`);
      const clean = s.replace(/\/$/, '');
      t.false(
        ignored.some((g) => clean === g || clean.startsWith(`${g}/`)),
        `COPY ${s}: .dockerignore leaves it out of the context`,
      );
    }
  }
  const probe = copies.find((c) => c.sources.includes(probeScript));
  t.truthy(probe, `the image carries ${probeScript}`);
  t.is(path.posix.join(workdir ?? '', probe?.dest ?? '', path.basename(probeScript)), `/app/${probeScript}`);
});

test('the sources the Dockerfile copies are enough to compile dist/cli/main.js', (t) => {
  const ins = dockerfile();
  const buildStage = ins.slice(
    0,
    ins.findIndex((i, n) => i.op === 'FROM' && n > 0),
  );
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // COPY's rules: a folder's content into the destination, a file into it by its own name.
  for (const c of contextCopies(buildStage)) {
    for (const s of c.sources) {
      const from = path.join(root, s);
      cpSync(from, statSync(from).isDirectory() ? path.join(dir, c.dest) : path.join(dir, c.dest, path.basename(s)), { recursive: true });
    }
  }
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  // The build script's tsc step (npm run build), on exactly what the image's build stage holds.
  execFileSync(path.join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'pipe' });
  t.true(statSync(path.join(dir, 'dist/cli/main.js')).isFile());
  t.true(existsSync(path.join(dir, 'gen/descriptor.binpb')), 'npm run build copies gen/descriptor.binpb into dist/gen');
});

// --- certificates and the probe, for real -----------------------------------------------------------

/** The DNS names the roles call each other and are called by, which their certificates must carry. */
function calledNames(): Record<Role, string[]> {
  const names: Record<Role, string[]> = { server: [], conductor: [], executor: [], inspector: [] };
  for (const w of deployment.workloads) {
    const role = roleOf(w.spec!.template!.spec.containers[0]!);
    for (const s of deployment.services.filter((x) => selects(x.spec!.selector as Record<string, string>, podLabels(w)))) {
      names[role].push(clusterName(s.metadata.name, 0).replace(/:0$/, ''));
    }
  }
  const server = deployment.workloads.find((w) => roleOf(w.spec!.template!.spec.containers[0]!) === 'server')!;
  const executors = envOf(server.spec!.template!.spec.containers[0]!).get('VIMMON_EXECUTORS')?.value ?? '';
  names.executor = executors.split(',').map((a) => a.slice(0, a.lastIndexOf(':')));
  return names;
}

function readmeSans(): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Kubernetes'));
  const m = /make-certs\.sh \S+ --san (\S+)/.exec(section);
  if (!m) throw new Error('README.md, Kubernetes: no make-certs.sh … --san command');
  return m[1]!;
}

test('certificates made as the README says carry every name the roles are called by', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-k8s-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('bash', [makeCertsScript, dir, '--san', readmeSans(), '--days', '2'], { stdio: 'pipe' });
  for (const [role, names] of Object.entries(calledNames())) {
    t.true(names.length > 0, role);
    const cert = new X509Certificate(readFileSync(path.join(dir, `${role}.pem`)));
    for (const host of names) {
      // The check grpc-js makes against the target's host name.
      const error = checkServerIdentity(host, { subjectaltname: cert.subjectAltName, subject: {} } as never);
      t.is(error, undefined, `${role} certificate for ${host}: ${error?.message}`);
    }
  }
});

function runProbe(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, probeScript), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, output }));
  });
}

test('the probe script: SERVING passes, NOT_SERVING fails readiness but passes liveness, a stranger or no answer fails', async (t) => {
  const certs = makeRoleCertificates();
  t.teardown(() => certs.remove());
  const tls = (): Tls => ({ ...certs.role('executor'), ca: certs.ca, clientCertificates: 'require' });
  const auth = createAuth({ mode: 'enforced', trustDomain: certs.trustDomain });
  const executor = await startExecutor({ logger: testLogger(), address: '127.0.0.1:0', conductorTarget: '127.0.0.1:1', tls: tls(), auth });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await executor.stop();
  });
  const probe = (port: number | string, ...extra: string[]) =>
    runProbe(['--role', 'executor', '--port', String(port), '--tls-dir', certs.dir, ...extra]);
  const port = portOf(executor.address);

  const ready = await probe(port);
  t.is(ready.code, 0, ready.output);
  t.is(ready.output.trim(), `executor at 127.0.0.1:${port}: SERVING`);
  // The executor's own file names, but a certificate from a CA the executor does not trust.
  const stranger = mkdtempSync(path.join(tmpdir(), 'vimmon-stranger-'));
  t.teardown(() => rmSync(stranger, { recursive: true, force: true }));
  writeFileSync(path.join(stranger, 'ca.pem'), certs.ca);
  writeFileSync(path.join(stranger, 'executor.pem'), certs.stranger.cert);
  writeFileSync(path.join(stranger, 'executor.key'), certs.stranger.key);
  const refused = await runProbe(['--role', 'executor', '--port', String(port), '--tls-dir', stranger, '--any-answer']);
  t.is(refused.code, 1, refused.output);
  const bad = await probe('x');
  t.is(bad.code, 1);
  t.regex(bad.output, /--port: expected a port/);

  // What a role answers while its database is down: the health registry's dependency state.
  const server = createGrpcServer({ logger: testLogger(), services: [], tls: tls(), auth });
  const downPort = await server.listen('127.0.0.1:0');
  t.teardown(() => server.shutdown());
  server.health.set('', ServingStatus.SERVING);
  server.health.setServing(false);
  const down = await probe(downPort);
  t.is(down.code, 1, down.output);
  t.regex(down.output, /NOT_SERVING/);
  const alive = await probe(downPort, '--any-answer');
  t.is(alive.code, 0, alive.output);
  server.health.setServing(true);
  t.is((await probe(downPort)).code, 0);

  await executor.stop();
  stopped = true;
  const gone = await probe(port, '--any-answer');
  t.is(gone.code, 1, gone.output);
});

test('kubectl kustomize renders the folder, every reference rewritten to the generated names', (t) => {
  let kubectl = true;
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'pipe' });
  } catch {
    kubectl = false;
  }
  if (!kubectl) {
    t.log('kubectl is not installed: the render is not checked');
    t.pass();
    return;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-kustomize-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(folder, dir, {
    recursive: true,
    filter: (src) => !src.startsWith(path.join(folder, 'secrets', '')) || src.endsWith('.gitignore'),
  });
  // Stand-ins for the operator's files: kustomize only needs them to exist.
  for (const g of deployment.kustomization.secretGenerator ?? []) {
    for (const e of generatorEntries(g)) {
      mkdirSync(path.dirname(path.join(dir, e.file)), { recursive: true });
      writeFileSync(path.join(dir, e.file), `stand-in for ${e.key}\n`);
    }
  }
  const rendered = parseAllDocuments(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' })).map((d) => d.toJS() as Resource);
  const names = new Set(rendered.map((r) => `${r.kind}/${r.metadata.name}`));
  for (const r of rendered)
    if (r.kind !== 'Namespace') t.is(r.metadata.namespace, deployment.kustomization.namespace, `${r.kind}/${r.metadata.name}`);
  for (const w of rendered.filter((r) => r.kind === 'Deployment' || r.kind === 'StatefulSet')) {
    const spec = w.spec!.template!.spec;
    for (const v of spec.volumes ?? []) {
      if (v.secret) t.true(names.has(`Secret/${v.secret.secretName}`), `${w.metadata.name}: Secret/${v.secret.secretName}`);
      if (v.configMap) t.true(names.has(`ConfigMap/${v.configMap.name}`), `${w.metadata.name}: ConfigMap/${v.configMap.name}`);
    }
    for (const e of spec.containers.flatMap((c) => c.env ?? [])) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref) t.true(names.has(`Secret/${ref.name}`), `${w.metadata.name}: ${e.name} → Secret/${ref.name}`);
    }
    for (const c of spec.containers) t.regex(c.image, /^vimmon:\S+$/, `${w.metadata.name}: image tag`);
  }
});
