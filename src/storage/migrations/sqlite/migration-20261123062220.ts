import { Migration } from '@mikro-orm/migrations';

export class Migration20261123062220 extends Migration {

  override name = 'Migration20261123062220';

  override up(): void | Promise<void> {
    this.addSql(`create table \`api_keys\` (\`id\` text not null primary key, \`tenant_id\` text not null, \`name\` text not null, \`name_ar\` text not null default '', \`prefix\` text not null, \`hash\` text not null, \`scopes\` json not null, \`rate_limit\` integer not null default 0, \`rate_limit_window_seconds\` integer not null default 0, \`expires_at\` datetime null, \`created_at\` datetime not null, \`updated_at\` datetime not null, \`last_used_at\` datetime null, \`request_count\` bigint not null default 0, \`enabled\` integer not null default true, \`revoked_at\` datetime null, \`revoked_reason\` text not null default '', \`created_by\` text not null default '', \`metadata\` json not null);`);
    this.addSql(`create unique index \`api_keys_hash_unique\` on \`api_keys\` (\`hash\`);`);
    this.addSql(`create index \`api_keys_tenant_created_idx\` on \`api_keys\` (\`tenant_id\`, \`created_at\`, \`id\`);`);

    this.addSql(`create table \`audit_events\` (\`id\` text not null primary key, \`tenant_id\` text not null, \`actor\` text not null, \`action\` text not null, \`target\` text not null, \`details\` json not null, \`occurred_at\` datetime not null);`);
    this.addSql(`create index \`audit_events_tenant_occurred_idx\` on \`audit_events\` (\`tenant_id\`, \`occurred_at\`, \`id\`);`);

    this.addSql(`create table \`settings\` (\`tenant_id\` text not null, \`key\` text not null, \`value\` text not null, \`value_type\` text not null, \`description\` text not null default '', \`description_ar\` text not null default '', \`is_public\` integer not null default false, \`updated_at\` datetime not null, primary key (\`tenant_id\`, \`key\`));`);
  }

}
