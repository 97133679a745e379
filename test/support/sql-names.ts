// The names a ClickHouse SELECT reads, checked against the tables the analytics room creates:
// a misspelt table or column in a Grafana panel would otherwise show only as an error in
// Grafana. Simple, not a full SQL parser: strings, comments and Grafana's variables and
// macros are removed; `FROM|JOIN db.table` must name a table of the database; every other
// bare identifier that is not a keyword, a type, a function (followed by `(`) or an alias
// the query defines (`AS name`) must be a column of a table the query reads.

/** Column names of each table of `CREATE TABLE [IF NOT EXISTS] db.table (...)` statements. */
export function tablesOfDdl(statements: readonly string[]): Map<string, Set<string>> {
  const tables = new Map<string, Set<string>>();
  for (const ddl of statements) {
    const head = /CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?(\w+)\s*\(/i.exec(ddl);
    if (!head) throw new Error(`not a CREATE TABLE statement: ${ddl.slice(0, 80)}`);
    const body = ddl.slice(head.index + head[0].length, ddl.search(/\)\s*ENGINE/i));
    const columns = body
      .split('\n')
      .map((line) => /^\s*([A-Za-z_]\w*)\s+[A-Z]/.exec(line)?.[1])
      .filter((c): c is string => c !== undefined);
    tables.set(head[1]!, new Set(columns));
  }
  return tables;
}

const KEYWORDS = new Set(
  (
    'select from where and or not in as group by order having limit any all left right inner ' +
    'outer full cross join using on desc asc with like ilike is null case when then else end ' +
    'distinct between interval day week month year hour minute second union settings format ' +
    'true false offset prewhere array final sample'
  ).split(' '),
);
const TYPES =
  /^(U?Int(8|16|32|64|128|256)|Float(32|64)|String|FixedString|Date|Date32|DateTime|DateTime64|Array|Nullable|LowCardinality|Decimal\d*|UUID|Bool)$/;

export interface SqlCheck {
  database: string;
  tables: Map<string, Set<string>>;
}

/** What the query names that does not exist, in words; empty when every name is known. */
export function sqlNameProblems(sql: string, check: SqlCheck): string[] {
  const problems: string[] = [];
  const text = sql
    .replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ')
    .replace(/'(?:[^'\\]|\\.|'')*'/g, "''")
    .replace(/\$\{[^}]*\}/g, ' ')
    .replace(/\$\w+/g, ' ');
  const read = new Set<string>();
  const withoutTables = text.replace(
    /\b(FROM|JOIN)\s+([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?/gi,
    (m, _kw: string, first: string, second: string | undefined) => {
      if (second === undefined) {
        problems.push(`${m}: name the table with its database (${check.database}.${first})`);
        return ' ';
      }
      if (first !== check.database)
        problems.push(`${m}: the tables are in the database ${check.database}, not ${first}`);
      else if (!check.tables.has(second))
        problems.push(
          `${m}: no table ${second} in ${check.database} (tables: ${[...check.tables.keys()].join(', ')})`,
        );
      else read.add(second);
      return ' ';
    },
  );
  const aliases = new Set([...withoutTables.matchAll(/\bAS\s+([A-Za-z_]\w*)/gi)].map((m) => m[1]!));
  const columns = new Set([...read].flatMap((t) => [...check.tables.get(t)!]));
  for (const m of withoutTables.matchAll(/(?<![\w.])([A-Za-z_]\w*)(?![\w.])(\s*\()?/g)) {
    const [, name = '', call] = m;
    if (call || KEYWORDS.has(name.toLowerCase()) || TYPES.test(name) || aliases.has(name)) continue;
    if (!columns.has(name))
      problems.push(
        `column ${name} is in none of the tables the query reads (${[...read].join(', ') || 'none'})`,
      );
  }
  return [...new Set(problems)];
}
