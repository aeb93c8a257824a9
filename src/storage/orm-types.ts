// The ORM type shared by both drivers: the SQL flavour of MikroORM, so stores
// can use SQL-only EntityManager features (execute, query builder).
// Type-only imports: nothing here loads a driver at runtime.

import type { MikroORM } from "@mikro-orm/core";
import type { AbstractSqlDriver, SqlEntityManager } from "@mikro-orm/postgresql";

export type SqlOrm = MikroORM<AbstractSqlDriver, SqlEntityManager<AbstractSqlDriver>>;
export type { SqlEntityManager };
