// The variables a template uses that nothing provides: a static walk of each file's
// handlebars syntax tree, so a typo or a trait no one sends is caught in every branch, not
// only in those the sample data happens to render. A variable is provided when sample.json
// has it, or when it is in the data every message gets (KNOWN_DATA).
//
// Errors and warnings: a plain `{{user.company}}` or a value given to `formatDate` or
// `formatCurrency` that nothing provides fails the send (strict mode, or the helper refuses
// it), so it is an error. A value given to a partial may or may not be needed there: a
// warning, shown but not refused. Nothing is said of what a template already guards: the
// condition of `{{#if}}`, `{{#unless}}`, `{{#each}}` and `{{#with}}` and that same value
// inside the block, and the values of `default` and `eq`, which take a missing one.
import type { LoadedTemplate, TemplateError } from './loader.ts';

type Handlebars = typeof import('handlebars');

/** Data every message gets, whatever the template (see templates/README.md, "Personalising"). */
export const KNOWN_DATA: Readonly<Record<string, unknown>> = {
  sendId: true,
  links: { unsubscribe: true, preferences: true },
  rule: { id: true },
  event: { type: true, properties: {} },
  user: { email: true, phone: true, locale: true, timezone: true },
};

/** The element of a list, in a path (`items.[].name`). */
const ELEMENT = '[]';
const BUILTIN_BLOCKS = new Set(['if', 'unless', 'each', 'with']);
const HELPERS = new Set(['formatDate', 'formatCurrency', 'default', 'eq', 'lookup', 'log']);

interface Node {
  type: string;
  loc?: { start: { line: number; column: number } };
  [k: string]: unknown;
}
interface PathNode extends Node {
  data: boolean;
  depth: number;
  parts: string[];
  original: string;
}
interface Scope {
  /** The context's path from the root; null when it cannot be known statically. */
  path: string[] | null;
  /** Block params (`as |item i|`) -> what they stand for. */
  params: Map<string, string[] | null>;
}

export interface VariableUse {
  path: string;
  /** 1-based line in the file. */
  line: number;
  /** `fails`: a send fails when it is missing; `maybe`: it may (a partial's value); `guarded`: it cannot. */
  when: 'fails' | 'maybe' | 'guarded';
}

/** Helpers that take a missing value without failing. */
const TOLERANT = new Set(['default', 'eq', 'log', 'lookup']);

function provides(value: unknown, segments: readonly string[]): boolean {
  if (segments.length === 0) return true;
  const [head, ...rest] = segments as [string, ...string[]];
  if (head === ELEMENT) {
    // `{{#each}}` walks a list's items or an object's values (a digest item's properties).
    const items = Array.isArray(value)
      ? value
      : value !== null && typeof value === 'object'
        ? Object.values(value)
        : null;
    if (items === null) return false;
    // An empty list in the sample says nothing about its items.
    return items.length === 0 || items.some((item) => provides(item, rest));
  }
  if ((Array.isArray(value) || typeof value === 'string') && head === 'length')
    return rest.length === 0;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  if (!Object.prototype.hasOwnProperty.call(value, head)) return false;
  return provides((value as Record<string, unknown>)[head], rest);
}

/** Every variable a template source uses, resolved to a path from the data's root. */
export function variableUses(hb: Handlebars, source: string, lineOffset = 1): VariableUse[] {
  const out: VariableUse[] = [];
  const ast = hb.parse(source) as unknown as Node;
  const line = (n: Node) => (n.loc?.start.line ?? 1) + lineOffset - 1;

  const resolve = (p: PathNode, scopes: Scope[]): string[] | null => {
    if (p.data) return p.parts[0] === 'root' ? p.parts.slice(1) : null;
    const scope = scopes[scopes.length - 1 - p.depth] ?? scopes[0]!;
    const [first, ...rest] = p.parts;
    if (first === undefined) return scope.path;
    for (let i = scopes.length - 1 - p.depth; i >= 0 && p.depth === 0; i--) {
      const s = scopes[i]!;
      if (s.params.has(first)) {
        const base = s.params.get(first)!;
        return base === null ? null : [...base, ...rest];
      }
    }
    return scope.path === null ? null : [...scope.path, ...p.parts];
  };

  // A guard vouches for its own path and the objects on the way to it, not for what is
  // inside it: `{{#if user.company}}{{user.company.name}}` still needs the name.
  const under = (path: string[], guards: string[][]) =>
    guards.some((g) => path.length <= g.length && path.every((s, i) => g[i] === s));

  const use = (
    p: Node,
    scopes: Scope[],
    guards: string[][],
    when: VariableUse['when'],
  ): string[] | null => {
    if (p.type === 'SubExpression') {
      params(p, scopes, guards, helperMode(p));
      return null;
    }
    if (p.type !== 'PathExpression') return null;
    const path = resolve(p as PathNode, scopes);
    if (path === null || path.length === 0) return path;
    out.push({ path: path.join('.'), line: line(p), when: under(path, guards) ? 'guarded' : when });
    return path;
  };

  const helperMode = (n: Node): VariableUse['when'] =>
    TOLERANT.has((n.path as PathNode).parts?.[0] ?? '') ? 'guarded' : 'fails';

  const params = (n: Node, scopes: Scope[], guards: string[][], when: VariableUse['when']) => {
    for (const p of (n.params as Node[] | undefined) ?? []) use(p, scopes, guards, when);
    const hash = n.hash as { pairs: { value: Node }[] } | undefined;
    for (const pair of hash?.pairs ?? []) use(pair.value, scopes, guards, when);
  };

  const visit = (node: Node | undefined, scopes: Scope[], guards: string[][]): void => {
    if (!node) return;
    switch (node.type) {
      case 'Program':
        for (const s of node.body as Node[]) visit(s, scopes, guards);
        return;
      case 'MustacheStatement': {
        const path = node.path as PathNode;
        const helper =
          path.type === 'PathExpression' &&
          path.parts.length === 1 &&
          (HELPERS.has(path.parts[0]!) || ((node.params as Node[]).length > 0 && !path.data));
        if (helper) params(node, scopes, guards, helperMode(node));
        else use(path, scopes, guards, 'fails');
        return;
      }
      case 'PartialStatement':
      case 'PartialBlockStatement':
        params(node, scopes, guards, 'maybe');
        if (node.type === 'PartialBlockStatement') visit(node.program as Node, scopes, guards);
        return;
      case 'BlockStatement': {
        const name = (node.path as PathNode).parts[0] ?? '';
        const first = (node.params as Node[])[0];
        const target = first ? use(first, scopes, guards, 'guarded') : null;
        for (const p of ((node.params as Node[]) ?? []).slice(1)) use(p, scopes, guards, 'guarded');
        const program = node.program as (Node & { blockParams?: string[] }) | undefined;
        const inverse = node.inverse as Node | undefined;
        const block = program?.blockParams ?? [];
        if (name === 'each' || name === 'with') {
          const ctx =
            target === null ? null : name === 'each' ? [...target, ELEMENT] : [...target];
          const params = new Map<string, string[] | null>();
          if (block[0]) params.set(block[0], ctx);
          if (block[1]) params.set(block[1], null);
          // Inside the block, the block's own target exists.
          const inner = target ? [...guards, target] : guards;
          visit(program, [...scopes, { path: ctx, params }], inner);
          visit(inverse, scopes, guards);
          return;
        }
        if (name === 'if' || name === 'unless') {
          const guarded = target ? [...guards, target] : guards;
          visit(program, scopes, name === 'if' ? guarded : guards);
          visit(inverse, scopes, name === 'unless' ? guarded : guards);
          return;
        }
        if (!BUILTIN_BLOCKS.has(name)) {
          visit(program, scopes, guards);
          visit(inverse, scopes, guards);
        }
        return;
      }
      default:
        return;
    }
  };
  visit(ast, [{ path: [], params: new Map() }], []);
  return out;
}

/**
 * The variables of a template's files that neither its sample.json nor KNOWN_DATA provides:
 * errors where a send would fail, warnings where the value would render empty.
 */
export function unprovidedVariables(
  hb: Handlebars,
  tpl: LoadedTemplate,
): { errors: TemplateError[]; warnings: TemplateError[] } {
  const errors: TemplateError[] = [];
  const warnings: TemplateError[] = [];
  const sample = tpl.sample ?? {};
  const seen = new Set<string>();
  for (const byLocale of tpl.parts.values()) {
    for (const part of byLocale.values()) {
      const sources: [string, string, number][] = [
        ...Object.entries(part.fieldSources).map(([k, src]): [string, string, number] => [
          k,
          src,
          0,
        ]),
        ['body', part.source, part.bodyLine],
      ];
      for (const [what, source, lineOffset] of sources) {
        let uses: VariableUse[];
        try {
          uses = variableUses(hb, source, Math.max(1, lineOffset));
        } catch {
          continue; // A syntax error is reported by the loader.
        }
        for (const u of uses) {
          if (u.when === 'guarded') continue;
          const segments = u.path.split('.');
          if (provides(sample, segments) || provides(KNOWN_DATA, segments)) continue;
          const where = what === 'body' ? `line ${u.line}` : what;
          const key = `${part.file}\u0000${where}\u0000${u.path}\u0000${u.when}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const shown = u.path.replaceAll(`.${ELEMENT}`, '[]');
          if (u.when === 'fails')
            errors.push({
              file: part.file,
              message: `${where}: "${shown}" is not in sample.json nor in the data every message gets, so a send without it fails; add it to sample.json, or guard it with {{#if ${shown}}} or {{default ${shown} "..."}}`,
            });
          else
            warnings.push({
              file: part.file,
              message: `${where}: "${shown}" is not in sample.json nor in the data every message gets; the partial gets nothing when it is missing (add it to sample.json if it is expected)`,
            });
        }
      }
    }
  }
  return { errors, warnings };
}
