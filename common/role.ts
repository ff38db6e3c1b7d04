/** What every role's start function returns: where it listens and how to stop it. */
export interface RunningRole {
  name: string;
  /** host:port actually bound (port 0 resolved). */
  address: string;
  /** Ordered shutdown: not serving, streams ended (UNAVAILABLE), loops awaited, server closed. Idempotent. */
  stop(): Promise<void>;
}
