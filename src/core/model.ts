// Plain domain records and the storage ports the core needs. Storage
// implements these; nothing here knows about the ORM or the wire.

export interface KeyRecord {
  id: string;
  tenantId: string;
  name: string;
  nameAr: string;
  /** Display prefix: key prefix plus the first few secret characters. */
  prefix: string;
  /** SHA-256 / HMAC-SHA256 of the full key, lowercase hex. */
  hash: string;
  scopes: string[];
  /** Requests per window; 0 = unlimited. */
  rateLimit: number;
  rateLimitWindowSeconds: number;
  expiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  lastUsedAt: Date | null;
  requestCount: number;
  enabled: boolean;
  revokedAt: Date | null;
  revokedReason: string;
  createdBy: string;
  metadata: Record<string, string>;
}

/**
 * What the verification cache keeps per key: the fields a decision and the
 * Verify answer read, as plain values (times as epoch ms), and everything else
 * in `packed`. 100,000 cached keys must fit a sidecar's memory, so this is
 * about a tenth of a KeyRecord (no Date objects, no per-key copies of equal
 * scope lists or tenant ids, one string instead of a dozen fields).
 */
export interface CachedKey {
  readonly id: string;
  readonly tenantId: string;
  /** Shared between keys with equal scopes: never mutate. */
  readonly scopes: readonly string[];
  /** Requests per window; 0 = unlimited. */
  readonly rateLimit: number;
  readonly rateLimitWindowSeconds: number;
  /** Epoch ms, or null: never expires. */
  readonly expiresAt: number | null;
  readonly enabled: boolean;
  readonly revoked: boolean;
  /** Stored usage as loaded (what is counted since is added from the usage recorder). */
  readonly lastUsedAt: number | null;
  readonly requestCount: number;
  /**
   * The rest of the record, packed by the cache's KeyPacker. keyward packs it
   * as the keyward.v1.ApiKey wire bytes without the usage fields (a latin1
   * string: one byte per character, in the JS heap, not in a Buffer slab), so
   * the lean Verify path copies it into the answer as is.
   */
  readonly packed: string;
}

/** Packs a record's fields for CachedKey.packed. */
export type KeyPacker = (record: KeyRecord) => string;

export type KeyPatch = Partial<
  Pick<
    KeyRecord,
    "name" | "nameAr" | "scopes" | "rateLimit" | "rateLimitWindowSeconds" | "expiresAt" | "enabled" | "metadata"
  >
>;

export type SettingType = "string" | "int" | "bool" | "json";

export interface SettingRecord {
  tenantId: string;
  key: string;
  value: string;
  valueType: SettingType;
  description: string;
  descriptionAr: string;
  isPublic: boolean;
  updatedAt: Date;
}

/** Keyset cursor for key listings (newest first). */
export interface KeyCursor {
  createdAt: Date;
  id: string;
}

export interface KeyListQuery {
  tenantId: string;
  limit: number;
  after?: KeyCursor;
  includeRevoked: boolean;
}

export interface UsageDelta {
  id: string;
  count: number;
  lastUsedAt: Date;
}

/**
 * Every method that reaches a key by id takes the caller's tenant wall:
 * `tenantId` undefined only for the global admin.
 */
export interface KeyStore {
  findByHash(hash: string): Promise<KeyRecord | null>;
  findById(id: string, tenantId?: string): Promise<KeyRecord | null>;
  insert(record: KeyRecord, audit: AuditInput): Promise<void>;
  /** Applies the patch; returns the updated record, or null if no such key within the wall. */
  update(id: string, tenantId: string | undefined, patch: KeyPatch, audit: AuditInput): Promise<KeyRecord | null>;
  /**
   * Sets revoked_at/reason unless already revoked (then nothing is written, no
   * audit event either); returns the record as stored afterwards.
   */
  revoke(id: string, tenantId: string | undefined, reason: string, audit: AuditInput): Promise<KeyRecord | null>;
  list(query: KeyListQuery): Promise<KeyRecord[]>;
  /** Adds usage counts in one transaction. */
  addUsage(deltas: UsageDelta[]): Promise<void>;
}

export interface SettingListQuery {
  tenantId: string;
  limit: number;
  afterKey?: string;
  publicOnly: boolean;
}

export interface SettingStore {
  get(tenantId: string, key: string): Promise<SettingRecord | null>;
  upsert(record: SettingRecord, audit: AuditInput): Promise<SettingRecord>;
  list(query: SettingListQuery): Promise<SettingRecord[]>;
  /** True if a setting was deleted. */
  delete(tenantId: string, key: string, audit: AuditInput): Promise<boolean>;
}

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** One management action, kept for audit. */
export interface AuditEvent {
  id: string;
  tenantId: string;
  /** "admin" (the admin token), "cli" (the command line) or the acting key's id. */
  actor: string;
  /** e.g. "key.issue", "key.revoke", "key.update", "setting.set", "setting.delete". */
  action: string;
  /** Key id or setting key the action touched. */
  target: string;
  /** Small JSON-able detail (changed fields, reason); never key material. */
  details: Record<string, unknown>;
  occurredAt: Date;
}

export interface AuditQuery {
  tenantId: string;
  limit: number;
  /** Keyset cursor: events strictly older than this (occurredAt desc, id desc). */
  after?: { occurredAt: Date; id: string };
}

/**
 * What a mutating store call records about itself. The store adds id, tenant,
 * target and time, and commits the event in the same transaction as the change,
 * so every acknowledged change is durable and audited together.
 */
export interface AuditInput {
  actor: string;
  action: string;
  details: Record<string, unknown>;
  /** The change's time; also used as updated_at / revoked_at. */
  at: Date;
}

export interface AuditStore {
  list(query: AuditQuery): Promise<AuditEvent[]>;
}
