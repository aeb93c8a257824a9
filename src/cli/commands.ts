// Every keyward command: help, options and a lazily imported implementation,
// so `--help` and usage errors answer without loading the server or the ORM.
import { DEFAULT_LIST_LIMIT, EXIT } from "./args.js";
import type { CommandSpec } from "./command.js";
import { applyV8Flags, DEFAULT_V8_FLAGS } from "../v8-flags.js";

const JSON_OPTION = "  --json                 print one JSON object instead of text";
const TENANT_OPTION = "  --tenant T             the tenant (required)";

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "serve",
    summary: "run the server (the default command)",
    usage: "keyward [serve]",
    help: `Runs keyward: migrates the database, then serves every protocol on KEYWARD_LISTEN until
SIGTERM or SIGINT, on which it drains and exits 0. The same as \`node dist/main.js\`.
With KEYWARD_WORKERS > 1 it forks that many worker processes (PostgreSQL only).
It runs with the V8 heap flags of KEYWARD_V8_FLAGS (default: ${DEFAULT_V8_FLAGS.join(" ")}).
Exits 2 on an invalid configuration and 1 when it cannot start.`,
    options: {},
    positionals: [0, 0],
    run: async (input) => {
      // Re-executes with the V8 flags first (see v8-flags.ts), before the server is loaded.
      applyV8Flags();
      const { serve } = await import("./serve.js");
      await serve({ configFile: input.configFile });
      return undefined;
    },
  },
  {
    name: "migrate",
    summary: "apply pending database migrations and exit",
    usage: "keyward migrate",
    help: `Applies pending schema migrations to KEYWARD_DATABASE_URL and exits, logging one JSON line
(the server also migrates at every start; on PostgreSQL an advisory lock makes concurrent runs safe).
The same as \`npm run migrate\`.`,
    options: {},
    positionals: [0, 0],
    run: async (input) => {
      const { migrate } = await import("./migrate.js");
      return migrate({ configFile: input.configFile });
    },
  },
  {
    name: "issue",
    summary: "create an API key and print it once",
    usage: "keyward issue --tenant T [options]",
    help: `Creates a key straight against the database (no server needed; pending migrations are applied
first) and prints the plaintext key once: keyward keeps only its hash. Bootstrap a tenant's first
admin key with --scope keyward:admin. Recorded with actor "cli" in the audit trail and created_by.

Options:
${TENANT_OPTION}
  --name N               a name for people
  --name-ar N            the Arabic name
  --scope S              a scope the key grants; repeat for more
  --rate-limit N         requests per window; 0 (default) is unlimited
  --window SECONDS       the rate-limit window (default 3600)
  --expires TIME         expiry as RFC 3339, e.g. 2027-01-31T00:00:00Z (default never)
  --prefix P             key prefix such as sk_live (default kw)
  --metadata K=V         a metadata entry; repeat for more
${JSON_OPTION}: {"key": ..., "apiKey": {...}}`,
    options: {
      tenant: { type: "string" },
      name: { type: "string" },
      "name-ar": { type: "string" },
      scope: { type: "string", multiple: true },
      "rate-limit": { type: "string" },
      window: { type: "string" },
      expires: { type: "string" },
      prefix: { type: "string" },
      metadata: { type: "string", multiple: true },
      json: { type: "boolean" },
    },
    positionals: [0, 0],
    run: async (input) => (await import("./key-commands.js")).runIssue(input),
  },
  {
    name: "revoke",
    summary: "revoke a key by id",
    usage: "keyward revoke ID [--reason R]",
    help: `Revokes the key with this id (any tenant). Revoking a revoked key changes nothing and succeeds.
Exits 3 when there is no such key.

Options:
  --reason R             why, kept with the key and in the audit trail
${JSON_OPTION}: the key's metadata`,
    options: { reason: { type: "string" }, json: { type: "boolean" } },
    positionals: [1, 1],
    run: async (input) => (await import("./key-commands.js")).runRevoke(input),
  },
  {
    name: "list",
    summary: "list a tenant's keys (never their secrets)",
    usage: "keyward list --tenant T [--include-revoked] [--limit N] [--json]",
    help: `Lists a tenant's keys, newest first: id, display prefix, status, scopes, name. Secrets and hashes
are never shown.

Options:
${TENANT_OPTION}
  --include-revoked      list revoked keys too
  --limit N              at most N keys (default ${DEFAULT_LIST_LIMIT}); more is reported on stderr
${JSON_OPTION}: {"keys": [...], "truncated": false}`,
    options: {
      tenant: { type: "string" },
      "include-revoked": { type: "boolean" },
      limit: { type: "string" },
      json: { type: "boolean" },
    },
    positionals: [0, 0],
    run: async (input) => (await import("./key-commands.js")).runList(input),
  },
  {
    name: "settings get",
    summary: "print a setting's value",
    usage: "keyward settings get --tenant T KEY [--json]",
    help: `Prints the setting's value alone (or, with --json, the whole setting). Exits 3 when it does not exist.

Options:
${TENANT_OPTION}
${JSON_OPTION}`,
    options: { tenant: { type: "string" }, json: { type: "boolean" } },
    positionals: [1, 1],
    run: async (input) => (await import("./settings-commands.js")).runSettingsGet(input),
  },
  {
    name: "settings set",
    summary: "create or replace a typed setting",
    usage: "keyward settings set --tenant T KEY VALUE --type string|int|bool|json [options]",
    help: `Creates or replaces a setting; the value is checked against its type (int: 64-bit integer,
bool: true or false, json: any JSON). Put a VALUE that starts with "-" after "--":
keyward settings set --tenant acme --type int -- offset -5

Options:
${TENANT_OPTION}
  --type TYPE            string, int, bool or json (required)
  --public               readable by every key of the tenant, not only admins
  --description D        what it is for
  --description-ar D     the Arabic description
${JSON_OPTION}`,
    options: {
      tenant: { type: "string" },
      type: { type: "string" },
      public: { type: "boolean" },
      description: { type: "string" },
      "description-ar": { type: "string" },
      json: { type: "boolean" },
    },
    positionals: [2, 2],
    run: async (input) => (await import("./settings-commands.js")).runSettingsSet(input),
  },
  {
    name: "settings list",
    summary: "list a tenant's settings",
    usage: "keyward settings list --tenant T [--json]",
    help: `Lists every setting of the tenant, public and private.

Options:
${TENANT_OPTION}
${JSON_OPTION}: {"settings": [...]}`,
    options: { tenant: { type: "string" }, json: { type: "boolean" } },
    positionals: [0, 0],
    run: async (input) => (await import("./settings-commands.js")).runSettingsList(input),
  },
  {
    name: "settings delete",
    summary: "delete a setting",
    usage: "keyward settings delete --tenant T KEY",
    help: `Deletes the setting. Exits 3 when it does not exist.

Options:
${TENANT_OPTION}`,
    options: { tenant: { type: "string" } },
    positionals: [1, 1],
    run: async (input) => (await import("./settings-commands.js")).runSettingsDelete(input),
  },
  {
    name: "config",
    summary: "print the effective configuration (secrets masked)",
    usage: "keyward config",
    help: `Prints the configuration keyward would run with as JSON: the values after environment, config
file and defaults (secrets masked), and for each KEYWARD_* variable its config-file key and where its
value came from (env, file or default). Exits 2, naming the variable or file key, when it is invalid.`,
    options: {},
    positionals: [0, 0],
    run: async (input) => (await import("./config-command.js")).runConfig(input),
  },
];

export const GLOBAL_OPTIONS = `Global options (before or after the command):
  --config FILE          a YAML or JSON config file (default: $KEYWARD_CONFIG); environment
                         variables override it
  -h, --help             show help`;

export const EXIT_CODES = `Exit codes:
  ${EXIT.ok}  success
  ${EXIT.failure}  failure (e.g. the database is unreachable)
  ${EXIT.usage}  usage or configuration error, or a value keyward rejects
  ${EXIT.notFound}  not found (revoke, settings get, settings delete)`;

export function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((command) => command.name === name);
}

export function commandHelp(command: CommandSpec): string {
  return `Usage: ${command.usage}\n\n${command.help}\n\n${GLOBAL_OPTIONS}`;
}

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const list = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n");
  return `keyward: API-key authorization sidecar

Usage: keyward [--config FILE] [COMMAND] [options]

Commands:
${list}

Run \`keyward COMMAND --help\` for a command's options. The database commands (issue, revoke, list,
settings) act as an admin straight on KEYWARD_DATABASE_URL, with actor "cli" in the audit trail.

${GLOBAL_OPTIONS}

${EXIT_CODES}`;
}

export function settingsHelp(): string {
  const subs = COMMANDS.filter((c) => c.name.startsWith("settings "));
  const width = Math.max(...subs.map((c) => c.name.length));
  return `Usage: keyward settings get|set|list|delete ...

Commands:
${subs.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

${GLOBAL_OPTIONS}`;
}
