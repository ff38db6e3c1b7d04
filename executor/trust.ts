// The VIMs' CA certificates as TLS contexts: one per distinct PEM text,
// shared by every action that trusts it, because a context holds an OpenSSL
// certificate store of its own and the VIMs of one cloud usually share one CA.
// A context lives as long as an action refers to it (weakly held here).
import { createHash } from 'node:crypto';
import tls from 'node:tls';

export interface Trust {
  /** sha256 of the PEM text: two actions trust the same CAs when their ids are equal. */
  readonly id: string;
  /** Only these CAs (not the system's): an https answer must verify against them. */
  readonly context: tls.SecureContext;
}

export class TrustStore {
  private readonly byId = new Map<string, WeakRef<Trust>>();
  private readonly collected = new FinalizationRegistry<string>((id) => {
    if (this.byId.get(id)?.deref() === undefined) this.byId.delete(id);
  });

  /** The trust of this PEM text (checked by checkCaCertificates first). */
  trust(pem: string): Trust {
    const id = createHash('sha256').update(pem).digest('hex');
    const known = this.byId.get(id)?.deref();
    if (known) return known;
    const trust: Trust = Object.freeze({ id, context: tls.createSecureContext({ ca: pem }) });
    this.byId.set(id, new WeakRef(trust));
    this.collected.register(trust, id);
    return trust;
  }

  /** Distinct CA sets held now. */
  get size(): number {
    return this.byId.size;
  }
}
