// keyward issue, revoke and list: the core's key manager over the database.
import { LIMITS } from "../core/validation.js";
import { DEFAULT_LIST_LIMIT, EXIT, keyValues, timestamp, wholeNumber } from "./args.js";
import { withAdminContext } from "./admin-context.js";
import { flagOption, listOption, requiredOption, stringOption, type CommandInput } from "./command.js";
import { clip, keyJson, keyStatus, table } from "./output.js";

// The storage column is a signed 32-bit integer.
const MAX_RATE_LIMIT = 2_147_483_647;
// Largest --limit for list; pages are fetched LIMITS.pageSizeMax at a time.
const MAX_LIST_LIMIT = 1_000_000;

export async function runIssue(input: CommandInput): Promise<number> {
  const { values } = input;
  const issue = {
    tenantId: requiredOption(values, "tenant"),
    name: stringOption(values, "name") ?? "",
    nameAr: stringOption(values, "name-ar") ?? "",
    scopes: listOption(values, "scope"),
    rateLimit: wholeNumber("rate-limit", stringOption(values, "rate-limit"), 0, MAX_RATE_LIMIT) ?? 0,
    rateLimitWindowSeconds: wholeNumber("window", stringOption(values, "window"), 1, LIMITS.maxWindowSeconds) ?? 0,
    expiresAt: timestamp("expires", stringOption(values, "expires")) ?? null,
    metadata: keyValues("metadata", listOption(values, "metadata")),
    prefix: stringOption(values, "prefix") ?? "",
  };
  const { config } = input.config();
  const { key, record } = await withAdminContext(config, (admin) => admin.keys.issue(admin.principal, issue));
  if (flagOption(values, "json")) {
    input.out(JSON.stringify({ key, apiKey: keyJson(record) }));
  } else {
    input.out(`key:     ${key}`);
    input.out(`id:      ${record.id}`);
    input.out(`prefix:  ${record.prefix}`);
    input.out(`tenant:  ${record.tenantId}`);
    input.out(`scopes:  ${record.scopes.join(" ") || "(none)"}`);
    input.err("keyward: the key is shown this once; keyward keeps only its hash");
  }
  return EXIT.ok;
}

export async function runRevoke(input: CommandInput): Promise<number> {
  const id = input.positionals[0]!;
  const reason = stringOption(input.values, "reason") ?? "";
  const { config } = input.config();
  const record = await withAdminContext(config, (admin) => admin.keys.revoke(admin.principal, id, reason));
  if (flagOption(input.values, "json")) {
    input.out(JSON.stringify(keyJson(record)));
  } else {
    // Revoke is idempotent: an already revoked key keeps its first time and reason.
    input.out(`revoked ${record.id} (tenant ${record.tenantId}) at ${record.revokedAt?.toISOString()}`);
  }
  return EXIT.ok;
}

export async function runList(input: CommandInput): Promise<number> {
  const { values } = input;
  const tenantId = requiredOption(values, "tenant");
  const limit = wholeNumber("limit", stringOption(values, "limit"), 1, MAX_LIST_LIMIT) ?? DEFAULT_LIST_LIMIT;
  const includeRevoked = flagOption(values, "include-revoked");
  const { config } = input.config();
  const { records, truncated } = await withAdminContext(config, async (admin) => {
    const records = [];
    let pageToken = "";
    do {
      // One more than asked for tells whether the list was cut.
      const pageSize = Math.min(LIMITS.pageSizeMax, limit + 1 - records.length);
      const page = await admin.keys.list(admin.principal, { tenantId, pageSize, pageToken, includeRevoked });
      records.push(...page.records);
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && records.length <= limit);
    return { records: records.slice(0, limit), truncated: records.length > limit || pageToken !== "" };
  });
  if (flagOption(values, "json")) {
    input.out(JSON.stringify({ keys: records.map(keyJson), truncated }));
    return EXIT.ok;
  }
  if (records.length === 0) {
    input.err(`keyward: no ${includeRevoked ? "" : "unrevoked "}keys for tenant ${tenantId}`);
    return EXIT.ok;
  }
  const now = Date.now();
  const rows = records.map((r) => [
    r.id,
    r.prefix,
    keyStatus(r, now),
    r.createdAt.toISOString(),
    r.scopes.join(" "),
    clip(r.name, 40),
  ]);
  for (const line of table(["ID", "PREFIX", "STATUS", "CREATED", "SCOPES", "NAME"], rows)) input.out(line);
  if (truncated) input.err(`keyward: showing the newest ${limit} keys; raise --limit to see more`);
  return EXIT.ok;
}
