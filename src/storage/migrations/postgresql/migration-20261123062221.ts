import { Migration } from '@mikro-orm/migrations';

export class Migration20261123062221 extends Migration {

  override name = 'Migration20261123062221';

  override up(): void | Promise<void> {
    this.addSql(`create table "api_keys" ("id" varchar(64) not null, "tenant_id" varchar(128) not null, "name" varchar(255) not null, "name_ar" varchar(255) not null default '', "prefix" varchar(64) not null, "hash" varchar(64) not null, "scopes" jsonb not null, "rate_limit" int not null default 0, "rate_limit_window_seconds" int not null default 0, "expires_at" timestamptz(3) null, "created_at" timestamptz(3) not null, "updated_at" timestamptz(3) not null, "last_used_at" timestamptz(3) null, "request_count" bigint not null default 0, "enabled" boolean not null default true, "revoked_at" timestamptz(3) null, "revoked_reason" text not null default '', "created_by" varchar(128) not null default '', "metadata" jsonb not null, primary key ("id"));`);
    this.addSql(`alter table "api_keys" add constraint "api_keys_hash_unique" unique ("hash");`);
    this.addSql(`create index "api_keys_tenant_created_idx" on "api_keys" ("tenant_id", "created_at", "id");`);

    this.addSql(`create table "audit_events" ("id" varchar(64) not null, "tenant_id" varchar(128) not null, "actor" varchar(128) not null, "action" varchar(64) not null, "target" varchar(255) not null, "details" jsonb not null, "occurred_at" timestamptz(3) not null, primary key ("id"));`);
    this.addSql(`create index "audit_events_tenant_occurred_idx" on "audit_events" ("tenant_id", "occurred_at", "id");`);

    this.addSql(`create table "settings" ("tenant_id" varchar(128) not null, "key" varchar(255) not null, "value" text not null, "value_type" varchar(16) not null, "description" text not null default '', "description_ar" text not null default '', "is_public" boolean not null default false, "updated_at" timestamptz(3) not null, primary key ("tenant_id", "key"));`);
  }

}
